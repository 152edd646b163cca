"""`export` finishes what it can: every requested artifact attempted, failures reported, exit 1,
and the gate shows a failed artifact as a FAIL row naming the re-run command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgeship.cli import main
from tests.conftest import cli_project

OVERFLOW = {
    'factory = "edgeship.demo:build_model"': 'factory = "tests.models:overflow_net"',
    'inputs = [{ name = "image", shape = [1, 1, 8, 8], dtype = "float32" }]':
        'inputs = [{ name = "x", shape = [1, 4], dtype = "float32" }]',
    'outputs = ["logits"]': 'outputs = ["y"]',
    'calibration = "edgeship.demo:calibration_data"\nevaluation = "edgeship.demo:evaluation_data"\n': "",
}
ONE_BUDGET = '[[budgets]]\ndevice = "*"\ntarget = "onnx"\nprecision = "*"\nsize_kb = 1000\n'


def _project(tmp: Path) -> Path:
    """The overflow model (its onnx-fp16 fails the range check, onnx-fp32 builds), one size budget."""
    cfg = cli_project(tmp, OVERFLOW)
    text = cfg.read_text()
    cfg.write_text(text[: text.index("[[budgets]]")] + ONE_BUDGET)
    return cfg


@pytest.fixture(scope="module")
def partial(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int, str, str]:
    """One CLI export of fp16 (fails) then fp32 (builds): (config, exit code, stdout, stderr)."""
    import contextlib
    import io

    tmp = tmp_path_factory.mktemp("partial")
    cfg = _project(tmp)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["--config", str(cfg), "export", "--target", "onnx", "--precision", "fp16,fp32"])
    return cfg, code, out.getvalue(), err.getvalue()


def test_a_failure_does_not_stop_the_others(partial: tuple[Path, int, str, str]) -> None:
    cfg, code, out, err = partial
    root = cfg.parent / "build" / "artifacts" / "digits_cnn"
    assert code == 1
    assert (root / "onnx-fp32" / "model.onnx").is_file()          # attempted after the failure
    assert not (root / "onnx-fp16").exists()
    failures = [ln for ln in err.splitlines() if ln.startswith("edgeship: export ")]
    assert len(failures) == 1 and "onnx-fp16 failed" in failures[0] and "beyond float16" in failures[0]
    assert err.strip().splitlines()[-1] == failures[0]             # the last line says why
    table = out[out.index("artifact "):].splitlines()           # the summary table
    rows = {ln.split()[0]: ln.split()[1:] for ln in table[2:] if ln[:1].strip()}   # wrapped lines start blank
    assert list(rows) == ["onnx-fp16", "onnx-fp32"]                  # plan order, failures included
    assert rows["onnx-fp32"][0] == "built" and float(rows["onnx-fp32"][-1]) > 0   # its size (KiB column)
    assert rows["onnx-fp16"][:3] == ["FAILED", "tensor", "'mul_1'"]
    why = " ".join(" ".join(ln.split()) for ln in table[2:] if "onnx-fp32" not in ln).removeprefix("onnx-fp16 FAILED ")
    assert why in failures[0]                                       # the table wraps the reason, the line has it all
    record = json.loads((cfg.parent / "build" / "export-failures" / "digits_cnn" / "onnx-fp16.json").read_text())
    assert record["target"] == "onnx" and record["precision"] == "fp16" and "float16" in record["reason"]


def test_gate_shows_the_failed_artifact_as_fail(partial: tuple[Path, int, str, str],
                                                capsys: pytest.CaptureFixture[str]) -> None:
    cfg = partial[0]
    code = main(["--config", str(cfg), "gate", "--no-remeasure"])
    out = capsys.readouterr().out
    assert code == 1
    report = json.loads((cfg.parent / "build" / "reports" / "report.json").read_text())
    rows = {c["artifact"]: c for c in report["checks"]}
    assert rows["onnx-fp32"]["verdict"] == "PASS"
    assert rows["onnx-fp16"]["verdict"] == "FAIL"
    assert "export of onnx-fp16 failed" in rows["onnx-fp16"]["detail"]
    assert "edgeship export --target onnx --precision fp16" in out


def test_api_raises_export_incomplete_with_what_was_built(tmp_path: Path) -> None:
    import edgeship
    from edgeship.errors import ExportError

    cfg = edgeship.load_config(_project(tmp_path))
    with pytest.raises(edgeship.ExportIncomplete) as info:
        edgeship.export(cfg, target="onnx", precision="fp32,fp16")
    exc = info.value
    assert isinstance(exc, ExportError) and exc.exit_code == 1
    assert [(m.target, m.precision) for m in exc.built] == [("onnx", "fp32")]
    assert [(f.name, f.target, f.precision) for f in exc.failures] == [("onnx-fp16", "onnx", "fp16")]
    assert "onnx-fp16" in str(exc) and "float16" in exc.failures[0].reason


def test_a_successful_export_clears_the_failure_record(tmp_path: Path) -> None:
    import edgeship
    from edgeship.exporting.failures import ExportFailure, load_failures, record_failure

    cfg = edgeship.load_config(_project(tmp_path))
    record_failure(cfg, ExportFailure("onnx-fp32", "onnx", "fp32", "an earlier attempt failed"))
    assert [f.name for f in load_failures(cfg)] == ["onnx-fp32"]
    edgeship.export(cfg, target="onnx", precision="fp32")
    assert load_failures(cfg) == []


def test_bad_input_still_aborts_before_any_work(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """int8 without calibration data is a config error: exit 2, and fp32 was not built either."""
    cfg = _project(tmp_path)
    code = main(["--config", str(cfg), "export", "--target", "onnx", "--precision", "fp32,int8"])
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2 and "calibration" in line and "int8" in line
    assert not (tmp_path / "build" / "artifacts").exists()
