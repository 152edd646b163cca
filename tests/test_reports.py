"""Reports from a synthetic gate result: junit/markdown/terminal content, deterministic re-render."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from edgeship.budgets import Check
from edgeship.gating import CheckResult, build_report
from edgeship.reports import write_reports
from edgeship.reports.junit import render_junit
from edgeship.reports.markdown import render_markdown
from edgeship.reports.terminal import render_terminal
from edgeship.types import Verdict
from tests.conftest import make_config


def result(artifact: str, status: str = "ok") -> dict[str, Any]:
    r: dict[str, Any] = {
        "device": {"name": "local"}, "status": status, "skip_reason": None if status == "ok" else "coreml needs macOS",
        "artifact": {"name": artifact, "size_bytes": 20480}, "runtime": {"name": "onnxruntime"},
        "env": {"cpu": "Fake CPU", "platform": "Linux", "python": "3.11"}, "settings": {},
        "memory": {"init_peak_kb": 30000, "steady_peak_kb": 31000},
    }
    if status == "ok":
        r["timing"] = {"load_ns": 1000, "first_ns": 500, "samples_ns": [1_000_000 + i for i in range(100)]}
    return r


@pytest.fixture
def report(tmp_path: Path) -> dict[str, Any]:
    def c(art: str, metric: str, verdict: Verdict, passed: bool, value: float | None) -> CheckResult:
        return CheckResult(Check(0, "local", art, metric, 1.0), verdict, passed, value, detail=f"{metric} detail")

    checks = [
        c("onnx-fp32", "latency_p90_ms", Verdict.PASS, True, 0.5),
        c("onnx-int8", "latency_p90_ms", Verdict.FAIL, False, 1.5),
        c("onnx-int8", "peak_memory_mb", Verdict.MARGINAL, True, 0.99),
        c("coreml-fp16", "latency_p90_ms", Verdict.SKIPPED, True, None),
    ]
    results = [result("onnx-fp32"), result("onnx-int8"), result("coreml-fp16", "skipped")]
    return build_report(make_config(tmp_path), checks, results, None, False)


def test_junit_one_testcase_per_check_one_failure(report: dict[str, Any]) -> None:
    root = ET.fromstring(render_junit(report))
    suite = root.find("testsuite")
    cases = suite.findall("testcase")
    assert len(cases) == 4 and suite.get("failures") == "1" and suite.get("skipped") == "1"
    failed = [k for k in cases if k.find("failure") is not None]
    assert [(k.get("classname"), k.get("name")) for k in failed] == [("local.onnx-int8", "latency_p90_ms")]
    assert [k.get("classname") for k in cases if k.find("skipped") is not None] == ["local.coreml-fp16"]


def test_markdown_and_terminal_show_every_verdict(report: dict[str, Any]) -> None:
    assert report["verdict"] == "FAIL"
    md = render_markdown(report)
    for label in ("PASS", "FAIL", "MARGINAL", "SKIPPED", "### Latency (ms) and memory", "coreml needs macOS"):
        assert label in md
    term = render_terminal(report)
    assert "MARGINAL(pass)" in term and term.rstrip().endswith(
        "gate: FAIL (1 PASS, 1 FAIL, 1 MARGINAL, 1 SKIPPED); failing: local/onnx-int8: latency_p90_ms")
    assert "PASS" in render_terminal(report, all_rows=True) and "SKIPPED" in render_terminal(report, all_rows=True)


def test_rerender_is_byte_identical(report: dict[str, Any], tmp_path: Path) -> None:
    first = tmp_path / "a"
    write_reports(report, first, html=False)
    import json

    again = json.loads((first / "report.json").read_text())
    second = tmp_path / "b"
    write_reports(again, second, json_too=False, html=False)
    for name in ("report.md", "junit.xml"):
        assert (first / name).read_bytes() == (second / name).read_bytes()
