"""Bad model sources through `edgeship export`: one line, exit 2, no artifact left behind."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgeship.cli import main
from tests.conftest import cli_project
from tests.test_config import no_artifacts, run_cli


def test_factory_that_does_not_exist(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = cli_project(tmp_path, {"edgeship.demo:build_model": "edgeship.demo:build_modle"})
    code, line = run_cli(capsys, cfg, "export", "--target", "onnx", "--precision", "fp32")
    assert code == 2
    assert "model.factory" in line and "did you mean 'edgeship.demo:build_model'" in line
    assert no_artifacts(tmp_path)

def test_factory_module_missing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = cli_project(tmp_path, {"edgeship.demo:build_model": "no_such_pkg.models:build"})
    code, line = run_cli(capsys, cfg, "export", "--target", "onnx")
    assert code == 2 and "cannot import module 'no_such_pkg.models'" in line

def test_pt2_that_is_not_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "model.pt2").write_bytes(b"definitely not a zip archive")
    cfg = cli_project(tmp_path, {'factory = "edgeship.demo:build_model"': 'source = "model.pt2"'})
    code, line = run_cli(capsys, cfg, "export", "--target", "onnx", "--precision", "fp32")
    assert code == 2
    assert "model.source" in line and "not a torch.export .pt2 archive" in line
    assert no_artifacts(tmp_path)

def test_pt2_source_exports(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    from edgeship.demo import build_model

    prog = torch.export.export(build_model(), (torch.zeros(1, 1, 8, 8),))
    torch.export.save(prog, str(tmp_path / "model.pt2"))
    cfg = cli_project(tmp_path, {'factory = "edgeship.demo:build_model"': 'source = "model.pt2"'})
    code = main(["--config", str(cfg), "export", "--target", "onnx", "--precision", "fp32"])
    assert code == 0
    assert (tmp_path / "build" / "artifacts" / "digits_cnn" / "onnx-fp32" / "model.onnx").is_file()


def test_fp16_overflow_through_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An export that fails validation is exit 1 (a conversion failed, the input was fine; contract 6)
    with one line naming it, and leaves no artifact directory."""
    cfg = cli_project(tmp_path, {
        'factory = "edgeship.demo:build_model"': 'factory = "tests.models:overflow_net"',
        'inputs = [{ name = "image", shape = [1, 1, 8, 8], dtype = "float32" }]':
            'inputs = [{ name = "x", shape = [1, 4], dtype = "float32" }]',
        'outputs = ["logits"]': 'outputs = ["y"]',
        'calibration = "edgeship.demo:calibration_data"\nevaluation = "edgeship.demo:evaluation_data"\n': "",
    })
    code, line = run_cli(capsys, cfg, "export", "--target", "onnx", "--precision", "fp16")
    assert code == 1 and "onnx-fp16" in line and "inf/NaN" in line
    assert not (tmp_path / "build" / "artifacts" / "overflow" / "onnx-fp16").exists()
    assert no_artifacts(tmp_path)
