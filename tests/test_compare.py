"""edgeship compare: agreement matrix over the demo's real onnx and tflite artifacts."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from edgeship.cli import main
from edgeship.measure.compare import REFERENCE, compare, format_matrix
from edgeship.types import Target
from tests.conftest import cli_project

_LITERT_MODULES = ("ai_edge_litert", "ai_edge_litert.interpreter", "tflite_runtime", "tflite_runtime.interpreter",
                   "tensorflow", "tensorflow.lite")


def test_compare_matrix_on_demo(demo_project) -> None:
    cfg, _ = demo_project
    res = compare(cfg, samples=32)
    assert res["samples"] == 32
    rows = res["rows"]
    assert res["agreement"]["metric"] == "top1" and res["agreement"]["output"] == "logits"   # a classifier
    assert REFERENCE in rows and "onnx-fp32" in rows and "tflite-int8" in rows
    assert rows[REFERENCE]["cosine_mean"] == pytest.approx(1.0) and rows[REFERENCE]["agreement"] == 1.0
    for name in ("onnx-fp32", "tflite-fp32"):
        assert rows[name]["status"] == "ok" and rows[name]["cosine_mean"] >= 0.9999
    assert rows["tflite-int8"]["agreement"] >= 0.95
    pw = res["pairwise"]
    assert set(pw) == set(rows)   # nothing skipped: every row ran
    assert pw["onnx-fp32"]["tflite-fp32"] == pw["tflite-fp32"]["onnx-fp32"] >= 0.99
    assert all(pw[n][n] == 1.0 for n in pw)
    text = format_matrix(res, wide=True)
    assert "top1=tflite-int8" in text and text.count("\n") == len(rows) + 2
    narrow = format_matrix(res).splitlines()    # numbered columns: fits 100 columns
    assert max(map(len, narrow)) <= 100 and "column k: artifact #k" in narrow[0]


def test_compare_skips_artifacts_without_runtime(demo_project, monkeypatch: pytest.MonkeyPatch) -> None:
    """No LiteRT interpreter importable (simulated missing packages): tflite rows are SKIPPED, onnx still runs."""
    cfg, _ = demo_project
    for mod in _LITERT_MODULES:
        monkeypatch.setitem(sys.modules, mod, None)
    res = compare(cfg, targets=(Target.ONNX, Target.TFLITE), samples=8)
    assert res["rows"]["tflite-fp32"]["status"] == "skipped"
    assert "pip install ai-edge-litert" in res["rows"]["tflite-fp32"]["skip_reason"]
    assert "tflite-fp32" not in res["pairwise"] and res["rows"]["onnx-fp32"]["status"] == "ok"
    assert "SKIPPED" in format_matrix(res)


def test_compare_cli(demo_project, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg, _ = demo_project
    toml = cli_project(tmp_path, append=f'\n[build]\ndir = "{cfg.build.as_posix()}"\n')
    code = main(["--config", str(toml), "compare", "--target", "tflite", "--precision", "fp32,int8", "-n", "4"])
    out = capsys.readouterr().out
    assert code == 0
    assert "pytorch-fp32" in out and "tflite-int8" in out and "onnx-fp32" not in out
    assert main(["--config", str(toml), "compare", "-n", "0"]) == 2
