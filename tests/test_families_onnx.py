"""The ONNX backend on the families of issue 14: a transformers BERT encoder, GRU keyword
spotters and LSTM taggers, through every precision docs/export.md claims for them.

One export per model and module (the fp32 torch export is shared by the precisions of a run);
the assertions read the manifests and the artifacts.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from edgeship.types import Precision, Target
from tests.conftest import make_config, tiny_config

ALL = (Precision.FP32, Precision.FP16, Precision.INT8, Precision.INT8_DYNAMIC)


def _export(tmp: Path, name: str, precisions: tuple[Precision, ...], **overrides: Any) -> dict[str, Any]:
    from edgeship.exporting.pipeline import export_all

    cfg = tiny_config(tmp, name, **overrides)
    summary = export_all(cfg, (Target.ONNX,), precisions)
    assert not summary.failures, summary.failures
    return {"cfg": cfg, **{m.precision: m for m in summary.built}}


@pytest.fixture(scope="module")
def bert(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return _export(tmp_path_factory.mktemp("bert"), "bert_embedder", (*ALL, Precision.INT4_WEIGHT))


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """GRU/LSTM models exported to every precision, once per module, on first use."""
    cache: dict[str, dict[str, Any]] = {}

    def get(name: str) -> dict[str, Any]:
        if name not in cache:
            cache[name] = _export(tmp_path_factory.mktemp(name), name, ALL)
        return cache[name]

    return get


def _session(built: dict[str, Any], precision: str) -> Any:
    import onnxruntime as ort

    path = built["cfg"].artifacts_dir / f"onnx-{precision}" / "model.onnx"
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


# -- BERT ------------------------------------------------------------------------------------

def test_bert_every_precision_keeps_its_names_and_shapes(bert: dict[str, Any]) -> None:
    """The output named `embedding` no longer collides with torch's internal `embedding` value."""
    import onnx

    for p in (*ALL, Precision.INT4_WEIGHT):
        m = bert[p.value]
        assert [(o.name, o.shape) for o in m.outputs] == [("embedding", [1, 32])]
        sess = _session(bert, p.value)
        assert [o.name for o in sess.get_outputs()] == ["embedding"]
        assert [i.name for i in sess.get_inputs()] == ["input_ids", "attention_mask"]
        assert m.recipe["fidelity_check"]["cosine_min"] >= {"fp32": 0.9999, "fp16": 0.995}.get(p.value, 0.95)
    g = onnx.load(str(bert["cfg"].artifacts_dir / "onnx-fp32" / "model.onnx")).graph
    produced = [o for n in g.node for o in n.output]
    assert len(produced) == len(set(produced)) and "embedding_internal" in produced


def test_bert_fp16_ignores_the_attention_mask_fill(bert: dict[str, Any]) -> None:
    check = bert["fp16"].recipe["fp16_range_check"]
    assert check["masking_fills_ignored"] and check["tensors_with_mask_fill"] >= 1
    assert check["max_abs_activation"] <= 65504


@pytest.mark.parametrize("precision", ["int8", "int8-dynamic"])
def test_bert_int8_uses_the_transformer_recipe(bert: dict[str, Any], precision: str) -> None:
    r = bert[precision].recipe
    assert r["scope"].startswith("transformer") and "attention" in r["scope_why"]
    assert r["per_channel"] is True
    assert {"Softmax", "LayerNormalization"} <= set(r["float_ops"])       # kept float, and said so
    assert 0 < r["float_param_fraction"] < 0.5                           # the embedding tables
    assert bert[precision].built_for["cpu_class"] == r["cpu_class"]


def test_bert_int8_evaluates(bert: dict[str, Any]) -> None:
    from edgeship.measure.evaluate import evaluate

    report = evaluate(bert["cfg"], (Target.ONNX,), (Precision.INT8, Precision.INT8_DYNAMIC))
    for name in ("onnx-int8", "onnx-int8-dynamic"):
        entry = report["entries"][f"local/{name}"]
        assert entry["status"] == "ok" and entry["cosine_min"] >= 0.95, entry


def test_bert_compare_uses_retrieval_agreement(bert: dict[str, Any]) -> None:
    """An embedding model: compare's agreement is nearest-neighbour agreement, not the argmax of
    a unit vector's coordinates."""
    from edgeship.measure.compare import REFERENCE, compare, format_matrix

    res = compare(bert["cfg"], (Target.ONNX,), (Precision.FP32, Precision.INT8), samples=16)
    assert res["agreement"] == {"metric": "retrieval", "output": "embedding", "kind_from": res["agreement"]["kind_from"]}
    assert res["agreement"]["kind_from"].startswith("inferred: unit L2-norm")
    rows = res["rows"]
    assert rows[REFERENCE]["agreement"] == 1.0 and rows["onnx-fp32"]["agreement"] == 1.0
    assert 0.8 <= rows["onnx-int8"]["agreement"] <= 1.0 and rows["onnx-int8"]["cosine_mean"] > 0.99
    assert res["pairwise"]["onnx-fp32"]["onnx-fp32"] == 1.0
    text = format_matrix(res, wide=True)
    assert "NN agr" in text and "NN=onnx-int8" in text and "nearest-neighbour of embedding" in text
    assert "top1" not in text


# -- GRU -------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["gru_kws", "gru_kws_2layer"])
def test_gru_float_ops_tell_the_truth(built: Any, name: str) -> None:
    """ORT has no integer GRU: it stays float and holds most of the parameters; the recipe says so."""
    gru = built(name)
    for p in ("int8", "int8-dynamic"):
        r = gru[p].recipe
        assert "GRU" in r["float_ops"] and r["float_param_fraction"] > 0.8, r
    assert gru["int8"].recipe["float_ops"] == ["GRU"]           # Conv, Gemm: QDQ
    assert set(gru["int8-dynamic"].recipe["float_ops"]) == {"Conv", "GRU", "Relu"}   # dynamic: matmul-like only
    for p in ALL:
        assert [(o.name, o.shape) for o in gru[p.value].outputs] == [("logits", [1, 12])]
        assert gru[p.value].recipe["fidelity_check"]["cosine_min"] >= 0.99


# -- LSTM ------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["lstm_tagger", "lstm_tagger_1layer"])
def test_lstm_is_quantized(built: Any, name: str) -> None:
    """ORT's DynamicQuantizeLSTM: the LSTM weights are int8 in both recipes."""
    import onnx

    lstm = built(name)
    for precision in ("int8", "int8-dynamic"):
        r = lstm[precision].recipe
        assert "LSTM" not in r["float_ops"] and r["float_param_fraction"] < 0.01, r
        assert lstm[precision].size_bytes < lstm["fp32"].size_bytes / 3
        ops = {n.op_type for n in onnx.load(str(lstm["cfg"].artifacts_dir / f"onnx-{precision}" / "model.onnx")).graph.node}
        assert "DynamicQuantizeLSTM" in ops and "LSTM" not in ops
    assert "DynamicQuantizeLSTM" in lstm["int8"].recipe["lstm"]
    for p in ALL:
        assert [(o.name, o.shape) for o in lstm[p.value].outputs] == [("logits", [1, 8])]
        assert lstm[p.value].recipe["fidelity_check"]["cosine_min"] >= 0.99


# -- fp16 range check: a real overflow is named with its sign and ops, and the advice works ----

class NegativeOverflow(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = (x + 3.0) * 300.0           # ~900
        return (h * -h) / 1000.0         # ~-810000 before the division: -inf in float16


def negative_overflow() -> nn.Module:
    return NegativeOverflow().eval()


def test_fp16_overflow_keeps_the_sign_names_the_ops_and_the_advice_works(tmp_path: Path) -> None:
    from edgeship.exporting.pipeline import export_all

    model = {"name": "negover", "factory": "tests.test_families_onnx:negative_overflow", "outputs": ["y"],
             "inputs": [{"name": "x", "shape": [1, 4], "dtype": "float32"}]}
    cfg = make_config(tmp_path, model=model, data={})
    [failure] = export_all(cfg, (Target.ONNX,), (Precision.FP16,)).failures
    assert "\n" not in failure.reason
    assert re.search(r"reaches -1\.\d+e\+06", failure.reason), failure.reason
    assert re.search(r"output of Mul '\w+', feeding Div '\w+'", failure.reason), failure.reason
    advised = re.search(r"fp16_keep_float = \[(.*?)\]", failure.reason).group(1)
    keep = [s.strip().strip('"') for s in advised.split(",")]
    cfg = make_config(tmp_path, model=model, data={}, targets={"onnx": {"fp16_keep_float": keep}})
    summary = export_all(cfg, (Target.ONNX,), (Precision.FP16,))
    assert not summary.failures, summary.failures
    assert summary.built[0].recipe["kept_float32"] == keep
    x = np.ones((1, 4), np.float32)
    out = _session({"cfg": cfg}, "fp16").run(None, {"x": x})[0]
    assert np.allclose(out, -1440.0, rtol=1e-3)          # (1 + 3) * 300 = 1200; -1200^2 / 1000


def test_fp16_keep_float_naming_no_node_fails_that_artifact(tmp_path: Path) -> None:
    from edgeship.exporting.pipeline import export_all

    model = {"name": "negover", "factory": "tests.test_families_onnx:negative_overflow", "outputs": ["y"],
             "inputs": [{"name": "x", "shape": [1, 4], "dtype": "float32"}]}
    cfg = make_config(tmp_path, model=model, data={}, targets={"onnx": {"fp16_keep_float": ["node_mull"]}})
    summary = export_all(cfg, (Target.ONNX,), (Precision.FP32, Precision.FP16))
    assert [m.precision for m in summary.built] == ["fp32"]
    [failure] = summary.failures
    assert "targets.onnx.fp16_keep_float" in failure.reason and "node_mull" in failure.reason
    assert "did you mean 'node_mul" in failure.reason


def test_int8_scope_is_detected_or_set(bert: dict[str, Any], built: Any) -> None:
    """auto detects attention; [targets.onnx] int8_scope forces either scope, and says so."""
    from edgeship.config import TargetConfig
    from edgeship.exporters._onnx_int8_scope import scope

    bert_fp32 = bert["cfg"].artifacts_dir / "onnx-fp32" / "model.onnx"
    gru_fp32 = built("gru_kws")["cfg"].artifacts_dir / "onnx-fp32" / "model.onnx"
    assert scope(bert_fp32, False, True)["op_types"] == ["MatMul", "Gemm"]
    assert scope(gru_fp32, False, True)["op_types"] is None
    assert scope(gru_fp32, True, True)["record"]["scope"] == "matmul-like ops and LSTM"
    forced = scope(gru_fp32, False, True, "transformer")
    assert forced["op_types"] == ["MatMul", "Gemm"] and "int8_scope" in forced["record"]["scope_why"]
    off = scope(bert_fp32, True, True, "all")
    assert "LSTM" in off["op_types"] and "int8_scope" in off["record"]["scope_why"]
    assert TargetConfig().int8_scope == "auto"
