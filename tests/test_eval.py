"""Fidelity metrics on known vectors, and eval of the demo's artifacts (issue acceptance)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgeship.metrics import fidelity
from tests.conftest import project_copy


def test_fidelity_identical_and_perturbed() -> None:
    rng = np.random.default_rng(0)
    ref = [[rng.normal(size=(1, 10)).astype(np.float32)] for _ in range(5)]
    same = fidelity(ref, ref)
    assert same["cosine_min"] == pytest.approx(1.0) and same["max_abs_err"] == 0.0
    assert same["top1_agreement"] == 1.0
    neg = [[-o for o in s] for s in ref]
    f = fidelity(ref, neg)
    assert f["cosine_min"] == pytest.approx(-1.0) and f["top1_agreement"] < 1.0
    noisy = [[o + 0.01 * rng.normal(size=o.shape).astype(np.float32) for o in s] for s in ref]
    n = fidelity(ref, noisy)
    assert 0.99 < n["cosine_min"] < 1.0 and 30 < n["snr_db"] < 50


def test_fidelity_multi_output_concatenates() -> None:
    ref = [[np.array([[1.0, 0.0]]), np.array([0.0, 0.0, 1.0])]]
    cand = [[np.array([[1.0, 0.0]]), np.array([0.0, 0.0, -1.0])]]
    f = fidelity(ref, cand)
    assert f["cosine_min"] == pytest.approx(0.0, abs=1e-6)   # second output flips: orthogonal
    assert f["top1_agreement"] == 1.0                         # top-1 on the first output only
    assert f["max_abs_err"] == pytest.approx(2.0)


def test_demo_eval_meets_acceptance(demo_project) -> None:
    cfg, _ = demo_project
    report = json.loads((cfg.build / "reports" / "eval.json").read_text())
    assert report["schema"] == "edgeship.eval/2" and report["samples"] == 360
    assert report["reference"]["accuracy"] >= 0.95
    arts = {e["artifact"]: e for k, e in report["entries"].items() if k.startswith("local/")}
    assert arts["onnx-int8"]["status"] == "ok" and arts["onnx-int8"]["accuracy_drop"] <= 0.01
    assert arts["onnx-fp16"]["cosine_min"] >= 0.999
    assert arts["onnx-fp32"]["cosine_min"] >= 0.99999 and arts["onnx-fp32"]["accuracy_drop"] == 0.0


def test_eval_cli_filters_and_prints_table(demo_project, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from edgeship.measure.evaluate import evaluate

    cfg = project_copy(tmp_path, demo_project[0])
    report = evaluate(cfg, precisions=None, targets=None)
    from edgeship.measure.evaluate import format_table

    table = format_table(report)
    assert "onnx-int8" in table and "pytorch-fp32" in table
    from edgeship.types import Precision, Target

    only = evaluate(cfg, targets=(Target.ONNX,), precisions=(Precision.INT8,))
    assert only["updated"] == ["local/onnx-int8"]
    assert "local/onnx-int8" in format_table(only) and "local/onnx-fp32" not in format_table(only)
    # a subset merges: every other artifact's entry stays in eval.json
    assert json.loads((cfg.build / "reports" / "eval.json").read_text())["entries"].keys() == report["entries"].keys()
