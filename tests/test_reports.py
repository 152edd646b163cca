"""Reports from a synthetic gate result: junit/markdown/terminal content, deterministic re-render."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from edgeship.gating.budgets import Check
from edgeship.gating.checks import CheckResult
from edgeship.gating.judge import build_report
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
    def c(art: str, metric: str, verdict: Verdict, passed: bool, value: float | None, device: str = "local",
          **kw: str) -> CheckResult:
        return CheckResult(Check(0, device, art, metric, 1.0), verdict, passed, value, detail=f"{metric} detail", **kw)

    checks = [
        c("onnx-fp32", "latency_p90_ms", Verdict.PASS, True, 0.5),
        c("onnx-int8", "latency_p90_ms", Verdict.FAIL, False, 1.5),
        c("onnx-int8", "peak_memory_mb", Verdict.MARGINAL, True, 0.99),
        c("coreml-fp16", "latency_p90_ms", Verdict.SKIPPED, True, None),
        # a device-independent check (budget device "*") whose evidence is missing
        c("tflite-int8", "accuracy_drop", Verdict.FAIL, False, None, device="*",
          rerun="edgeship eval --target tflite --precision int8"),
    ]
    results = [result("onnx-fp32"), result("onnx-int8"), result("coreml-fp16", "skipped")]
    return build_report(make_config(tmp_path), checks, results, None, False)


def test_junit_one_testcase_per_check_one_failure(report: dict[str, Any]) -> None:
    root = ET.fromstring(render_junit(report))
    suite = root.find("testsuite")
    cases = suite.findall("testcase")
    assert len(cases) == 5 and suite.get("failures") == "2" and suite.get("skipped") == "1"
    assert {k: root.get(k) for k in ("tests", "failures", "errors", "time")} == {
        "tests": "5", "failures": "2", "errors": "0", "time": "0"}
    failed = [k for k in cases if k.find("failure") is not None]
    assert [(k.get("classname"), k.get("name")) for k in failed] == [
        ("local.onnx-int8", "latency_p90_ms"), ("any-device.tflite-int8", "accuracy_drop")]
    assert [k.get("classname") for k in cases if k.find("skipped") is not None] == ["local.coreml-fp16"]
    assert not any("*" in k.get("classname") for k in cases)


JUNIT_XSD = Path(__file__).parent / "data" / "junit-10.xsd"   # Jenkins xUnit's schema, vendored


def test_junit_is_valid_against_the_jenkins_schema(report: dict[str, Any]) -> None:
    import xmlschema  # a dev dependency (pyproject [dev]); make setup installs it

    schema = xmlschema.XMLSchema(JUNIT_XSD)
    schema.validate(render_junit(report))
    # the schema is strict enough to catch what a hand-rolled writer gets wrong
    bad = render_junit(report).replace('<testsuites name="edgeship"', '<testsuites skipped="1" name="edgeship"')
    assert not schema.is_valid(bad)
    assert not schema.is_valid(render_junit(report).replace('<testcase classname', '<testcase nom="x" classname'))


def test_markdown_and_terminal_show_every_verdict(report: dict[str, Any]) -> None:
    assert report["verdict"] == "FAIL"
    md = render_markdown(report)
    for label in ("PASS", "FAIL", "MARGINAL", "SKIPPED", "Latency and memory", "coreml needs macOS"):
        assert label in md
    term = render_terminal(report)
    assert "MARGINAL(pass)" in term and "gate: FAIL (1 PASS, 2 FAIL, 1 MARGINAL, 1 SKIPPED); failing: " in term
    assert "PASS" in render_terminal(report, all_rows=True) and "SKIPPED" in render_terminal(report, all_rows=True)


def test_markdown_puts_failures_first_and_folds_the_rest(report: dict[str, Any]) -> None:
    md = render_markdown(report)
    lines = md.splitlines()
    assert lines[0] == "## edgeship gate: digits_cnn — ❌ FAIL"
    assert "2 of 5 checks failed" in lines[2]
    top = md[:md.index("<details>")]        # what a PR reader sees without unfolding anything
    assert "### Failing checks" in top
    assert "local · onnx-int8 · latency_p90_ms: 1.5 ms, budget 1 ms" in top
    assert "any device · tflite-int8 · accuracy_drop" in top
    assert "  - re-run: `edgeship eval --target tflite --precision int8`" in lines
    assert "onnx-fp32" not in top and "coreml-fp16" not in top   # passing and skipped rows are folded
    # every <details> is closed, and GFM needs a blank line after <summary> to render its table
    assert md.count("<details>") == md.count("</details>") >= 2
    for i, line in enumerate(lines):
        if line.startswith("<details>"):
            assert lines[i + 1] == ""
    # the folded table: failures first, right-aligned numbers, units, no bare * or <=
    table = [ln for ln in lines if ln.startswith("| ")]
    assert lines[lines.index(table[0]) + 1] == "|:---|:---|:---|:---|---:|---:|:---|"
    assert "❌ FAIL" in table[1] and "❌ FAIL" in table[2] and "any device" in table[2]
    assert "0.99 MiB" in md and "1 ms" in md


def test_markdown_escapes_what_gfm_would_misread() -> None:
    from edgeship.reports.fmt import md_text

    assert md_text("0.5 ms <= 1") == "0.5 ms ≤ 1"
    assert md_text("cosine >= 0.99 on *") == "cosine ≥ 0.99 on \\*"
    assert md_text("a | b") == "a \\| b"
    assert md_text("share < 90% of <b>") == "share < 90% of \\<b>"      # only a tag-like < is escaped
    # a command in a code span is shown as typed (only a pipe is escaped: it would end the cell)
    assert md_text("stale; run `edgeship profile --device 'a*'`") == "stale; run `edgeship profile --device 'a*'`"
    assert md_text("odd ` tick") == "odd \\` tick"


def test_rerender_is_byte_identical(report: dict[str, Any], tmp_path: Path) -> None:
    first = tmp_path / "a"
    write_reports(report, first, html=False)
    import json

    again = json.loads((first / "report.json").read_text())
    second = tmp_path / "b"
    write_reports(again, second, json_too=False, html=False)
    for name in ("report.md", "junit.xml"):
        assert (first / name).read_bytes() == (second / name).read_bytes()
