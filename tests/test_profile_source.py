"""profile's `out cos`: an artifact exported from a compressed model is compared with that
model (its source), not with the original FP32 model, like eval (compress/evidence.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgeship.cli import main
from edgeship.config import load_config
from tests.test_compress import PRUNE, write_project

FAST = "[profile]\nmin_runs = 20\nmin_seconds = 0.01\nwarmup_runs = 2\nwarmup_seconds = 0.01\nrounds = 1\n"


def test_profile_compares_a_compressed_export_with_its_source(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from edgeship.measure.profile import profile

    path = write_project(tmp_path, PRUNE, FAST, train=False)
    assert main(["-c", str(path), "compress"]) == 0
    assert main(["-c", str(path), "export", "--target", "onnx", "--precision", "fp32"]) == 0
    cfg = load_config(path)
    (result,) = profile(cfg, "local")
    out = result["outputs"]
    # the fp32 export of the pruned model computes the pruned model: exact against its source
    assert out["cosine"] > 0.99999 and out["source"] == "compressed", out
    saved = json.loads((cfg.build / "results/local/onnx-fp32.json").read_text())
    assert saved["outputs"]["cosine"] == out["cosine"]
    # the same export from the original model is compared with the original
    assert main(["-c", str(path), "export", "--target", "onnx", "--precision", "fp32", "--from", "original"]) == 0
    (result,) = profile(load_config(path), "local")
    assert result["outputs"]["source"] == "original" and result["outputs"]["cosine"] > 0.99999
    capsys.readouterr()
