"""edgeship gate end to end on the demo: exit codes, junit, reports, baseline."""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from edgeship.cli import main
from tests.conftest import cli_project


@pytest.fixture
def project(profiled: Path, tmp_path: Path) -> Path:
    shutil.copytree(profiled / "build", tmp_path / "build")
    return tmp_path


def gate(capsys: pytest.CaptureFixture[str], cfg: Path, *extra: str) -> tuple[int, str, str]:
    code = main(["--config", str(cfg), "gate", *extra])
    out, err = capsys.readouterr()
    return code, out, err


def test_repo_budgets_pass(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = gate(capsys, cli_project(project))
    assert code == 0, out + err
    assert "gate: PASS" in out
    report = json.loads((project / "build" / "reports" / "report.json").read_text())
    assert report["schema"] == "edgeship.report/1" and report["verdict"] == "PASS"
    lat = [c for c in report["checks"] if c["metric"] == "latency_p90_ms"]
    assert lat and all(c["low"] is not None and c["low"] <= c["value"] <= c["high"] for c in lat)
    assert all(r["timing"]["samples_ns"] for r in report["results"])   # raw samples kept
    suite = ET.parse(project / "build" / "reports" / "junit.xml").getroot().find("testsuite")
    assert int(suite.get("tests")) == len(report["checks"]) and suite.get("failures") == "0"


def test_tightened_budget_fails_exactly_that_check(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = cli_project(project, append='\n[[budgets]]\ndevice = "local"\ntarget = "onnx"\nprecision = "int8"\nsize_kb = 1\n')
    code, out, _ = gate(capsys, cfg)
    assert code == 1 and "gate: FAIL" in out
    root = ET.parse(project / "build" / "reports" / "junit.xml").getroot()
    failed = [(c.get("classname"), c.get("name")) for c in root.iter("testcase") if c.find("failure") is not None]
    assert failed == [("any-device.onnx-int8", "size_kb")]   # a device-independent check: no literal "*"


def test_tightened_latency_budget_fails(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = cli_project(project, append='\n[[budgets]]\ndevice = "local"\ntarget = "tflite"\nprecision = "fp32"\nlatency_ms = { p50 = 0.0001 }\n')
    code, _, _ = gate(capsys, cfg, "--no-remeasure")
    assert code == 1
    root = ET.parse(project / "build" / "reports" / "junit.xml").getroot()
    failed = [(c.get("classname"), c.get("name")) for c in root.iter("testcase") if c.find("failure") is not None]
    assert failed == [("local.tflite-fp32", "latency_p50_ms")]


def test_budget_naming_unknown_device_is_exit_2(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = cli_project(project, append='\n[[budgets]]\ndevice = "pixel7"\nlatency_ms = { p90 = 5 }\n')
    code, _, err = gate(capsys, cfg)
    assert code == 2 and "unknown device 'pixel7'" in err and "[[budgets]] #4" in err


def test_budget_matching_nothing_is_exit_2(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = cli_project(project, append='\n[[budgets]]\ntarget = "coreml"\nsize_kb = 100\n')
    code, _, err = gate(capsys, cfg)
    assert code == 2 and "matches no configured or exported artifact" in err


def test_report_from_json_is_byte_identical(project: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    cfg = cli_project(project)
    assert gate(capsys, cfg)[0] == 0
    reports = project / "build" / "reports"
    out = tmp_path / "rerendered"
    assert main(["report", "--from", str(reports / "report.json"), "--out", str(out)]) == 0
    for name in ("report.md", "junit.xml"):
        assert (out / name).read_bytes() == (reports / name).read_bytes(), name


def test_baseline_same_hardware_no_regression_other_hardware_refused(project: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    cfg = cli_project(project)
    assert gate(capsys, cfg)[0] == 0
    base = tmp_path / "baseline.json"
    shutil.copy(project / "build" / "reports" / "report.json", base)
    code, out, _ = gate(capsys, cfg, "--baseline", str(base))
    assert code == 0 and "latency_regression" in out
    other = json.loads(base.read_text())
    for r in other["results"]:
        if r.get("env"):
            r["env"]["cpu"] = "Apple M2"
    base.write_text(json.dumps(other))
    code, _, err = gate(capsys, cfg, "--baseline", str(base))
    assert code == 2 and "different hardware" in err and "--force" in err
    assert gate(capsys, cfg, "--baseline", str(base), "--force")[0] == 0


def test_baseline_flags_a_real_slowdown(project: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """A baseline 20% faster than today's samples must be reported as a regression (exit 1)."""
    cfg = cli_project(project)
    assert gate(capsys, cfg)[0] == 0
    old = json.loads((project / "build" / "reports" / "report.json").read_text())
    for r in old["results"]:
        if r.get("timing"):
            r["timing"]["samples_ns"] = [int(s / 1.25) for s in r["timing"]["samples_ns"]]
            for e in r["timing"]["rounds"]:
                e["samples_ns"] = [int(s / 1.25) for s in e["samples_ns"]]
    base = tmp_path / "baseline.json"
    base.write_text(json.dumps(old))
    code, _, _ = gate(capsys, cfg, "--baseline", str(base), "--no-remeasure")
    assert code == 1
    report = json.loads((project / "build" / "reports" / "report.json").read_text())
    regress = [c for c in report["checks"] if c["metric"] == "latency_regression"]
    assert regress and all(not c["passed"] for c in regress)
