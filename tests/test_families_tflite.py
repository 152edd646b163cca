"""TFLite (LiteRT) for the model families of issue 14: a transformers BERT embedder (int64 ids and
mask), GRU keyword spotters and LSTM taggers, through every precision docs/export.md claims.

Each model is exported once per module (the FP32 conversion is shared by the precisions that
start from it); the tests check what the manifest says against the model file itself, the
fidelity on held-out inputs, eval, and a profile of the BERT artifact through the runner.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgeship.artifact.manifest import read_manifest
from edgeship.types import Precision, Target
from tests.conftest import FAST_PROFILE, tiny_config

ALL = (Precision.FP32, Precision.FP16, Precision.INT8_DYNAMIC, Precision.INT8_WEIGHT, Precision.INT8)
# the support table of docs/export.md (TFLite section): every "works" cell is a (model, precision) here
CELLS = {
    "bert_embedder": ALL,
    "gru_kws": ALL,
    "lstm_tagger": ALL,
}
# cosine on held-out inputs: the export sanity bounds of exporters/base.py, tightened where LiteRT does better
MIN_COSINE = {Precision.FP32: 0.9999, Precision.FP16: 0.999, Precision.INT8_DYNAMIC: 0.995,
              Precision.INT8_WEIGHT: 0.995, Precision.INT8: 0.99}
OUTPUT_SHAPES = {"bert_embedder": [1, 32], "gru_kws": [1, 12], "lstm_tagger": [1, 8]}


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory):
    """{model name: config} with every cell of CELLS exported (one export call per model)."""
    from edgeship.exporting.pipeline import export

    out = {}
    for name, precisions in CELLS.items():
        cfg = tiny_config(tmp_path_factory.mktemp(name), name, profile=FAST_PROFILE)
        export(cfg, (Target.TFLITE,), precisions)
        out[name] = cfg
    return out


@pytest.mark.parametrize("name", sorted(CELLS))
def test_every_cell_exports_with_configured_names_real_shapes_and_fidelity(exported, name: str) -> None:
    from ai_edge_litert.interpreter import Interpreter

    from edgeship.artifact.inprocess import run_artifact
    from edgeship.artifact.selection import find_artifacts
    from edgeship.metrics import fidelity
    from edgeship.model.reference import load_reference, run_reference
    from tests.models import heldout_feeds

    cfg = exported[name]
    arts = {a.precision: a for a in find_artifacts(cfg, (Target.TFLITE,))}
    assert set(arts) == set(CELLS[name])
    feeds = heldout_feeds(name)
    model = load_reference(cfg)
    ref = [run_reference(model, f, cfg.model.inputs) for f in feeds]
    for precision, art in arts.items():
        m = read_manifest(art.path)
        # declared names and dtypes (int64 ids stay int64), real output shapes
        assert [(i.name, i.dtype) for i in m.inputs] == [(s.name, s.dtype) for s in cfg.model.inputs]
        assert [(o.name, o.shape) for o in m.outputs] == [(cfg.model.outputs[0], OUTPUT_SHAPES[name])]
        sig = Interpreter(model_path=str(art.model_path)).get_signature_list()   # names sorted
        assert sig == {"serving_default": {"inputs": sorted(s.name for s in cfg.model.inputs),
                                           "outputs": sorted(cfg.model.outputs)}}, (art.name, sig)
        fid = fidelity(ref, run_artifact(art, feeds))
        assert fid["cosine_min"] >= MIN_COSINE[precision], (art.name, fid)


def test_int8_recipes_say_which_ops_stay_float_and_their_share_of_the_parameters(exported) -> None:
    import torch

    def share(model: torch.nn.Module, part: torch.nn.Module) -> float:
        return sum(p.numel() for p in part.parameters()) / sum(p.numel() for p in model.parameters())

    from edgeship.model.reference import load_reference

    for name in ("gru_kws", "lstm_tagger"):
        cfg = exported[name]
        r = read_manifest(cfg.artifacts_dir / "tflite-int8").recipe
        # the recurrent cell computes in float: its matmuls, gates and state updates
        assert {"FULLY_CONNECTED", "LOGISTIC", "TANH", "MUL"} <= set(r["float_ops"]), (name, r["float_ops"])
        assert r["float_ops"] == r["integer_graph"]["float_ops"]
        # the float parameters are the recurrent layers' (biases folded differently: a few % apart)
        model = load_reference(cfg)
        assert r["float_param_fraction"] == pytest.approx(share(model, model.rnn), abs=0.03), name
        assert 0 < r["float_params"] < r["params"]
    bert = exported["bert_embedder"]
    r = read_manifest(bert.artifacts_dir / "tflite-int8").recipe
    model = load_reference(bert)
    # the token/position tables are looked up in float with the integer ids; the mask is applied in float
    assert {"EMBEDDING_LOOKUP", "SELECT_V2"} <= set(r["float_ops"]) and "FULLY_CONNECTED" not in r["float_ops"]
    assert share(model, model.bert.embeddings) <= r["float_param_fraction"] < 0.5
    assert r["input_casts"]["input_ids"]["from"] == "int64" and r["input_casts"]["input_ids"]["to"] == "int32"
    # weight quantization leaves only biases, norms and the like in float
    for name, cfg in exported.items():
        for p in ("int8-dynamic", "int8-weight"):
            r = read_manifest(cfg.artifacts_dir / f"tflite-{p}").recipe
            assert 0 < r["float_param_fraction"] < 0.15 and r["float_params"] < r["params"], (name, p, r)


def test_eval_runs_every_bert_artifact(exported) -> None:
    from edgeship.measure.evaluate import evaluate

    cfg = exported["bert_embedder"]
    report = evaluate(cfg, (Target.TFLITE,))
    entries = {e["precision"]: e for e in report["entries"].values()}
    assert set(entries) == {p.value for p in ALL}
    for p, e in entries.items():
        assert e["status"] == "ok" and e["cosine_min"] >= MIN_COSINE[Precision(p)], (p, e)


def test_profile_runs_a_bert_artifact_through_the_runner(exported) -> None:
    from edgeship.measure.profile import profile

    cfg = exported["bert_embedder"]
    (result,) = profile(cfg, "local", (Target.TFLITE,), (Precision.INT8,))
    assert result["status"] == "ok" and result["artifact"]["name"] == "tflite-int8"
    assert len(result["timing"]["samples_ns"]) >= FAST_PROFILE["min_runs"]
    assert result["outputs"]["cosine"] >= MIN_COSINE[Precision.INT8]
    saved = json.loads((cfg.build / "results" / "local" / "tflite-int8.json").read_text())
    assert saved["artifact"]["artifact_digest"] == result["artifact"]["artifact_digest"]


def test_ids_that_do_not_fit_int32_are_refused_in_one_line(exported) -> None:
    from edgeship.runtimes.base import RuntimeRunError, get_runtime

    art = exported["bert_embedder"].artifacts_dir / "tflite-fp32"
    manifest = json.loads((art / "manifest.json").read_text())
    ids = np.ones((1, 32), np.int64)
    mask = np.ones((1, 32), np.int64)
    with get_runtime("litert")(str(art / "model.tflite"), manifest) as rt:
        ok = rt.run({"input_ids": ids, "attention_mask": mask})["embedding"]
        ids[0, 3] = 2**40
        with pytest.raises(RuntimeRunError) as exc:
            rt.run({"input_ids": ids, "attention_mask": mask})
    msg = str(exc.value)
    assert "\n" not in msg and "'input_ids'" in msg and "outside int32" in msg and str(2**40) in msg
    assert ok.shape == (1, 32) and np.isclose(np.linalg.norm(ok), 1.0, atol=1e-4)
    # a manifest that does not record the converter's narrowing: refused, never cast silently
    manifest["recipe"].pop("input_casts")
    with get_runtime("litert")(str(art / "model.tflite"), manifest) as rt, \
            pytest.raises(RuntimeRunError, match=r"input 'input_ids' is int64, the model takes int32 .* re-export"):
        rt.run({"input_ids": np.ones((1, 32), np.int64), "attention_mask": mask})

