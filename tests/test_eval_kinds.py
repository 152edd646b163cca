"""eval picks metrics by output kind (issue 14): classification, embedding, regression.

A tiny two-head model (an L2-normalised embedding and class logits from one trunk) goes
through real onnxruntime at fp32 and static int8; eval must score each output by its kind
(inferred, or configured in ``[model] output_kinds``), and the gate must judge
``min_retrieval_agreement`` on that evidence like ``min_cosine``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from edgeship.cli import main
from edgeship.measure.output_kinds import infer_kind
from edgeship.metrics import output_scores, retrieval
from edgeship.types import OutputKind

N_EVAL = 96


class TwoHead(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.trunk = nn.Sequential(nn.Linear(16, 64), nn.Tanh())
        self.emb = nn.Linear(64, 6)
        self.cls = nn.Linear(64, 5)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.trunk(x)
        return nn.functional.normalize(self.emb(h), dim=-1), self.cls(h)


def two_head() -> nn.Module:
    return TwoHead().eval()


def _x(seed: int, n: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 16)).astype(np.float32)


def calibration_data() -> Any:
    yield {"x": _x(1, 64)}


def evaluation_data() -> Any:
    x = _x(2, N_EVAL)
    with torch.no_grad():
        labels = two_head()(torch.from_numpy(x))[1].argmax(1).numpy()   # the FP32 model is 100% right
    yield {"x": x, "label": labels.astype(np.int64)}


PROJECT = """
[model]
name = "two_head"
factory = "tests.test_eval_kinds:two_head"
outputs = ["vec", "logits"]
inputs = [{{ name = "x", shape = [1, 16], dtype = "float32" }}]
{kinds}

[data]
calibration = "tests.test_eval_kinds:calibration_data"
evaluation = "tests.test_eval_kinds:evaluation_data"
calibration_samples = 64

[targets.onnx]
precisions = ["fp32", "int8"]

[profile]
min_runs = 20
min_seconds = 0.01
warmup_runs = 2
warmup_seconds = 0.01
rounds = 1
{budgets}
"""


def write_project(root: Path, kinds: str = "", budgets: str = "") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    path = root / "edgeship.toml"
    path.write_text(PROJECT.format(kinds=kinds, budgets=budgets))
    return path


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The two-head model exported once (onnx fp32 + int8); tests copy its build dir."""
    root = tmp_path_factory.mktemp("two_head")
    path = write_project(root)
    assert main(["-c", str(path), "export", "--target", "onnx"]) == 0
    return root


def _copy(exported: Path, tmp: Path, kinds: str = "", budgets: str = "") -> Path:
    shutil.copytree(exported / "build", tmp / "build")
    return write_project(tmp, kinds, budgets)


def _eval(path: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[dict[str, Any], str]:
    assert main(["-c", str(path), "eval", *extra]) == 0
    out = capsys.readouterr().out
    return json.loads((path.parent / "build/reports/eval.json").read_text()), out


# ---------------------------------------------------------------- the metrics on known sets

def test_retrieval_agreement_counts_swapped_neighbours_exactly() -> None:
    # four points on a line: each one's nearest neighbour (by cosine) is known
    ang = np.array([0.0, 0.1, 0.5, 0.65])
    ref = np.stack([np.cos(ang), np.sin(ang)], 1)
    assert retrieval(ref, ref) == (1.0, 1.0)
    # move point 2 next to point 0: 0 and 2 now pick each other, 1 and 3 are unchanged
    moved = ref.copy()
    moved[2] = [np.cos(0.02), np.sin(0.02)]
    agree, rho = retrieval(ref, moved)
    # neighbours: ref 0->1 1->0 2->3 3->2; moved 0->2 1->2 2->0 3->1: none agree
    assert agree == 0.0 and rho is not None and rho < 1.0
    # a sign flip keeps every neighbour (cosine shows the flip, retrieval does not)
    assert retrieval(ref, -ref)[0] == 1.0
    # duplicates tie: either twin is the right neighbour
    dup = np.concatenate([ref, ref[:1]])
    assert retrieval(dup, dup + 1e-9 * np.arange(dup.size).reshape(dup.shape))[0] == 1.0
    assert retrieval(ref[:1], ref[:1]) == (None, None)             # no neighbour to find
    assert retrieval(ref[:2], ref[:2]) == (1.0, None)              # no order to correlate
    assert retrieval(ref, np.full_like(ref, np.nan)) == (0.0, 0.0)


def test_metrics_that_do_not_apply_are_none() -> None:
    rng = np.random.default_rng(0)
    ref = [[rng.normal(size=(1, 4)).astype(np.float32), np.float32(rng.normal())] for _ in range(6)]
    got = [[a + np.float32(0.01), b + np.float32(0.5)] for a, b in ref]
    emb = output_scores(ref, got, 0, "embedding")
    assert emb["top1_agreement"] is None and emb["retrieval_agreement"] is not None
    cls = output_scores(ref, got, 0, "classification")
    assert cls["retrieval_agreement"] is None and cls["rank_correlation"] is None and cls["top1_agreement"] == 1.0
    reg = output_scores(ref, got, 1, "regression")     # a scalar output: no class axis at all
    assert reg["top1_agreement"] is None and reg["retrieval_agreement"] is None
    assert reg["max_abs_err"] == pytest.approx(0.5) and reg["snr_db"] is not None


@pytest.mark.parametrize(("arrays", "kind"), [
    ([np.array([[3.0, 4.0]]) / 5.0, np.array([[0.6, -0.8]])], OutputKind.EMBEDDING),
    ([np.array([[2.0, -1.0, 0.5]]), np.array([[0.1, 0.2, 0.3]])], OutputKind.CLASSIFICATION),
    ([np.array([[0.2, 0.3, 0.5]])], OutputKind.CLASSIFICATION),               # probabilities are not unit vectors
    ([np.array([[1.5]]), np.array([[2.5]])], OutputKind.REGRESSION),
    ([np.zeros((1, 3, 4, 4), np.float32)], OutputKind.REGRESSION),
    ([np.array([[1, 2, 3]])], OutputKind.REGRESSION),                            # integer values
])
def test_kind_inference(arrays: list[np.ndarray], kind: OutputKind) -> None:
    assert infer_kind(arrays)[0] is kind


def test_configured_kinds_win_and_a_classification_needs_a_class_axis() -> None:
    from edgeship.errors import ConfigError
    from edgeship.measure.output_kinds import output_kinds

    ref = [[np.array([[0.6, 0.8]]), np.array([[2.0]])]]
    got = output_kinds({"a": OutputKind.REGRESSION}, ["a", "b"], ref)
    assert [(o.name, o.kind, o.kind_from) for o in got] == [
        ("a", OutputKind.REGRESSION, "configured"), ("b", OutputKind.REGRESSION, "inferred: one value per sample (shape [1, 1])")]
    with pytest.raises(ConfigError, match=r"key 'model.output_kinds.b': a classification output needs a last axis"):
        output_kinds({"b": OutputKind.CLASSIFICATION}, ["a", "b"], ref)


# ---------------------------------------------------------------- eval end to end

def test_eval_scores_each_output_by_its_inferred_kind(exported: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    path = _copy(exported, tmp_path)
    report, out = _eval(path, capsys)
    assert report["schema"] == "edgeship.eval/2"
    assert report["reference"] == {"accuracy": 1.0, "labels": True, "accuracy_output": "logits"}
    for name in ("onnx-fp32", "onnx-int8"):
        e = report["entries"][f"local/{name}"]
        vec, logits = e["outputs"]["vec"], e["outputs"]["logits"]
        assert vec["kind"] == "embedding" and vec["kind_from"].startswith("inferred: unit L2-norm")
        assert logits["kind"] == "classification" and logits["kind_from"].startswith("inferred: 5 scores")
        assert vec["top1_agreement"] is None and logits["retrieval_agreement"] is None
        assert 0.0 <= vec["retrieval_agreement"] <= 1.0 and -1.0 <= vec["rank_correlation"] <= 1.0
        # the entry's figures: top-1 of the classification output, retrieval of the embedding
        assert e["top1_agreement"] == logits["top1_agreement"]
        assert e["retrieval_agreement"] == vec["retrieval_agreement"]
        assert e["rank_correlation"] == vec["rank_correlation"]
        assert e["accuracy_drop"] == pytest.approx(1.0 - e["accuracy"])
        for key in ("cosine_min", "cosine_mean", "max_abs_err", "snr_db", "artifact_digest", "samples"):
            assert key in e
    fp32, int8 = report["entries"]["local/onnx-fp32"], report["entries"]["local/onnx-int8"]
    assert fp32["retrieval_agreement"] == 1.0 and fp32["rank_correlation"] > 0.9999
    # int8 moves the embeddings: the nearest neighbours it keeps are measured, not assumed
    assert int8["outputs"]["vec"]["cosine_min"] < 0.99999 and int8["rank_correlation"] < 1.0
    assert "NN agr" in out and "top1 agr" in out


def test_configured_kinds_override_and_drop_what_does_not_apply(exported: Path, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    path = _copy(exported, tmp_path, kinds='output_kinds = { vec = "regression", logits = "embedding" }')
    report, out = _eval(path, capsys, "--precision", "fp32")
    e = report["entries"]["local/onnx-fp32"]
    assert e["outputs"]["vec"]["kind"] == "regression" and e["outputs"]["vec"]["kind_from"] == "configured"
    assert e["outputs"]["logits"]["kind"] == "embedding"
    # no classification output: no top-1, and no accuracy although the data has labels
    assert e["top1_agreement"] is None and e["accuracy"] is None and e["accuracy_drop"] is None
    assert e["retrieval_agreement"] == 1.0
    assert report["reference"] == {"accuracy": None, "labels": True, "accuracy_output": None}
    row = next(line for line in out.splitlines() if "local/onnx-fp32" in line)
    assert "100.00%" in row and row.count("%") == 1      # NN agreement only: no top-1 value


def test_eval_on_the_local_device_scores_kinds_too(exported: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    path = _copy(exported, tmp_path)
    report, _ = _eval(path, capsys, "--device", "local", "--precision", "int8", "--chunk", "40")
    e = report["entries"]["local/onnx-int8"]
    assert e["outputs"]["vec"]["kind"] == "embedding" and e["retrieval_agreement"] is not None
    assert e["outputs"]["logits"]["top1_agreement"] == e["top1_agreement"]


@pytest.mark.parametrize(("kinds", "needle"), [
    ('output_kinds = { vec = "embeding" }', ("key 'model.output_kinds.vec': 'embeding' is not one of classification, "
                                             "embedding, regression; did you mean 'embedding'?")),
    ('output_kinds = { emb = "embedding" }', "key 'model.output_kinds': 'emb' is not one of the outputs (vec, logits)"),
])
def test_bad_output_kinds_are_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                              kinds: str, needle: str) -> None:
    path = write_project(tmp_path, kinds)
    assert main(["-c", str(path), "eval"]) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1 and "Traceback" not in err


# ---------------------------------------------------------------- the gate

def _budget(limit: float, precision: str = "int8") -> str:
    return f'[[budgets]]\ntarget = "onnx"\nprecision = "{precision}"\nmin_retrieval_agreement = {limit}\n'


def test_gate_judges_retrieval_agreement_on_fresh_evidence(exported: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    from edgeship.config import load_config
    from edgeship.gating.judge import gate

    path = _copy(exported, tmp_path)
    report, _ = _eval(path, capsys)
    measured = report["entries"]["local/onnx-int8"]["retrieval_agreement"]
    path.write_text(path.read_text() + "\n" + _budget(measured) + "\n" + _budget(1.0, "fp32"))
    res = gate(load_config(path), remeasure=lambda _d, _a: [])
    got = {(r.check.precision, r.check.metric): r for r in res.checks}
    assert set(got) == {("int8", "retrieval_agreement"), ("fp32", "retrieval_agreement")}
    assert got[("int8", "retrieval_agreement")].passed and got[("int8", "retrieval_agreement")].value == measured
    assert got[("fp32", "retrieval_agreement")].passed and ">= 1" in got[("fp32", "retrieval_agreement")].detail
    # int8 moves 6-D embeddings of 96 samples enough to swap some nearest neighbours (cosine
    # stays > 0.998): just above what it keeps is a FAIL
    assert measured < 1.0
    path.write_text(path.read_text().replace(f"min_retrieval_agreement = {measured}",
                                             f"min_retrieval_agreement = {min(1.0, measured + 0.01)}"))
    r = gate(load_config(path), remeasure=lambda _d, _a: []).checks[0]
    assert not r.passed and "violates >=" in r.detail and r.verdict.value == "FAIL"
    # another build of the artifact (its manifest's bytes differ): the entry is stale evidence,
    # a FAIL naming the eval to re-run
    man = path.parent / "build/artifacts/two_head/onnx-int8/manifest.json"
    man.write_text(json.dumps(json.loads(man.read_text()), indent=3))
    r = gate(load_config(path), remeasure=lambda _d, _a: []).checks[0]
    assert not r.passed and r.rerun == "edgeship eval --target onnx --precision int8" and "stale" in r.detail


def test_retrieval_budget_on_a_model_without_embeddings_is_exit_2(exported: Path, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    path = _copy(exported, tmp_path, kinds='output_kinds = { vec = "regression" }', budgets=_budget(0.5, "fp32"))
    _eval(path, capsys, "--precision", "fp32")
    assert main(["-c", str(path), "gate", "--no-remeasure"]) == 2
    err = capsys.readouterr().err
    assert "min_retrieval_agreement but no output of two_head is an embedding" in err
    assert "vec=regression, logits=classification" in err


def test_profile_reports_no_top1_for_an_embedding_first_output(exported: Path, tmp_path: Path) -> None:
    from edgeship.config import load_config
    from edgeship.measure.profile import profile
    from edgeship.types import Precision

    path = _copy(exported, tmp_path)
    (r,) = profile(load_config(path), "local", precisions=(Precision.FP32,))
    assert r["outputs"]["top1_agreement"] is None and r["outputs"]["cosine"] > 0.9999   # first output: "vec"
    path.write_text(path.read_text().replace('outputs = ["vec", "logits"]',
                                             'outputs = ["vec", "logits"]\noutput_kinds = { vec = "classification" }'))
    (r,) = profile(load_config(path), "local", precisions=(Precision.FP32,))
    assert r["outputs"]["top1_agreement"] == 1.0
