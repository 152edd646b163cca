"""Bad input to `edgeship export`: one clear line, exit code 2, no artifact left behind."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgeship.cli import main
from tests.conftest import cli_project


def run_cli(capsys: pytest.CaptureFixture[str], cfg: Path, *args: str) -> tuple[int, str]:
    code = main(["--config", str(cfg), *args])
    err = capsys.readouterr().err.strip().splitlines()
    return code, (err[-1] if err else "")


def no_artifacts(tmp: Path) -> bool:
    root = tmp / "build" / "artifacts"
    return not root.exists() or not any(root.rglob("*.onnx")) and not any(
        p.name.startswith(".") for p in root.rglob("*")
    )


def test_typo_key_suggests_the_real_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = cli_project(tmp_path, {'factory = "edgeship.demo:build_model"': 'facory = "edgeship.demo:build_model"'})
    code, line = run_cli(capsys, cfg, "export", "--target", "onnx", "--precision", "fp32")
    assert code == 2
    assert "unknown key 'model.facory'; did you mean 'factory'?" in line and str(cfg) in line
    assert no_artifacts(tmp_path)


def test_wrong_type_names_the_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = cli_project(tmp_path, {"calibration_samples = 256": 'calibration_samples = "many"'})
    code, line = run_cli(capsys, cfg, "export", "--target", "onnx")
    assert code == 2 and "data.calibration_samples" in line


def test_missing_calibration_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = cli_project(tmp_path, {'calibration = "edgeship.demo:calibration_data"': 'calibration = "calib_images/"'})
    code, line = run_cli(capsys, cfg, "export", "--target", "onnx", "--precision", "int8")
    assert code == 2
    assert "data.calibration" in line and "calib_images" in line and "not found" in line
    assert no_artifacts(tmp_path)






def test_unknown_target_and_precision(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = cli_project(tmp_path)
    code, line = run_cli(capsys, cfg, "export", "--target", "tflit")
    assert code == 2 and "did you mean 'tflite'" in line
    code, line = run_cli(capsys, cfg, "export", "--target", "onnx", "--precision", "int8-weight")
    assert code == 2 and "target 'onnx' has no precision 'int8-weight'" in line


def test_missing_config_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, line = run_cli(capsys, tmp_path / "nope.toml", "export")
    assert code == 2 and "nope.toml" in line and "not found" in line


def test_init_writes_a_valid_starter(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from edgeship.config import load_config

    path = tmp_path / "edgeship.toml"
    assert main(["--config", str(path), "init"]) == 0
    cfg = load_config(path)
    assert cfg.model.name == "my_model"
    assert main(["--config", str(path), "init"]) == 2   # never overwrites silently


def _break_gate(monkeypatch: pytest.MonkeyPatch, exc: BaseException) -> None:
    import edgeship.gating.judge

    def gate(*_a: object, **_k: object) -> None:
        raise exc

    monkeypatch.setattr(edgeship.gating.judge, "gate", gate)


def test_internal_error_is_one_line_exit_3(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EDGESHIP_VERBOSE", raising=False)
    _break_gate(monkeypatch, ZeroDivisionError("division by zero"))
    code = main(["--config", str(cli_project(tmp_path)), "gate"])
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert code == 3
    assert err == [("edgeship: internal error: ZeroDivisionError: division by zero "
                    "(a bug; re-run with EDGESHIP_VERBOSE=1 for the traceback)")]


def test_verbose_prints_the_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGESHIP_VERBOSE", "1")
    _break_gate(monkeypatch, ZeroDivisionError("division by zero"))
    code = main(["--config", str(cli_project(tmp_path)), "gate"])
    err = capsys.readouterr().err
    assert code == 3 and "Traceback" in err and "ZeroDivisionError" in err


def test_os_error_names_the_users_path(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EDGESHIP_VERBOSE", raising=False)
    _break_gate(monkeypatch, PermissionError(13, "Permission denied", "/srv/proj/build/reports/.report.json.x1.tmp"))
    code, line = run_cli(capsys, cli_project(tmp_path), "gate")
    assert code == 2
    assert line == "edgeship: error: /srv/proj/build/reports: Permission denied; check its permissions"


def test_config_numbers_and_names(tmp_path: Path) -> None:
    """Finite, in range, plain names: checked once, at load, with the dotted key."""
    from edgeship.config import load_config
    from edgeship.errors import ConfigError

    for text, key in [("[devices.pi]\nkind = 'ssh'\nhost = 'pi'\nconnect_timeout_s = nan", "devices.pi.connect_timeout_s"),
                      ("[devices.pi]\nkind = 'ssh'\nhost = 'pi'\nconnect_timeout_s = 1e300", "devices.pi.connect_timeout_s"),
                      ("[gate]\nregression_threshold = 1.0", "gate.regression_threshold"),
                      ('[devices."../../x"]\nkind = "local"', "../../x"),
                      ('[build]\ndri = "x"', "build.dri")]:
        cfg = cli_project(tmp_path, fast=False, append="\n" + text + "\n")
        with pytest.raises(ConfigError) as exc:
            load_config(cfg)
        assert key in str(exc.value)
    (tmp_path / "edgeship.toml").write_bytes(b"# caf\xe9\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(tmp_path / "edgeship.toml")
