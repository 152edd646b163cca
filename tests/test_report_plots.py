"""report.html's plots from a synthetic gate result: units, budget colours, missing values,
responsive SVG (no chromium needed; tests/test_html_report.py loads the real page in it)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from edgeship.gating.budgets import Check
from edgeship.gating.checks import CheckResult
from edgeship.gating.judge import build_report
from edgeship.reports.drawing import COLORS, NARROW, WIDE
from edgeship.reports.html import render_html
from edgeship.reports.plots import latency_plot, memory_plot, tradeoff_plot
from edgeship.types import Verdict
from tests.conftest import make_config
from tests.test_reports import result

NAMES = ["onnx-fp32", "onnx-int8", "tflite-fp32", "tflite-int8"]


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    results = []
    for i, name in enumerate(NAMES):
        r = result(name)
        # 0.02 ms .. 0.2 ms: more than a decade with the 1 ms budget, so a log axis
        r["timing"]["samples_ns"] = [20_000 * (1 + 3 * i) + 37 * k for k in range(100)]
        r["artifact"]["size_bytes"] = 10_240 * (4 - i)
        results.append(r)
    results[1]["memory"]["steady_peak_kb"] = None          # not measured: must not be drawn as 0

    def c(art: str, metric: str, limit: float, passed: bool) -> CheckResult:
        return CheckResult(Check(0, "local", art, metric, limit), Verdict.PASS if passed else Verdict.FAIL, passed, 0.0,
                           detail="d")

    checks = [c("onnx-fp32", "latency_p90_ms", 1.0, True), c("tflite-int8", "latency_p90_ms", 0.1, False),
              c("onnx-fp32", "peak_memory_mb", 40.0, True), c("onnx-int8", "peak_memory_mb", 20.0, False)]
    rep = build_report(make_config(tmp_path_factory.mktemp("plots")), checks, results, None, False)
    rep["eval"] = {"schema": "edgeship.eval/2", "entries": {
        f"local/{n}": {"device": "local", "artifact": n, "status": "ok", "accuracy": 0.97 - 0.01 * i,
                       "cosine_mean": 0.9999 - 0.0001 * i} for i, n in enumerate(NAMES)}}
    return rep


def texts(svg: str) -> list[str]:
    return [t.strip() for t in re.findall(r"<text[^>]*>([^<]*)</text>", svg)]


@pytest.mark.parametrize("layout", [WIDE, NARROW], ids=["wide", "narrow"])
def test_latency_plot_units_ticks_and_budget_colours(report: dict[str, Any], layout) -> None:
    svg = latency_plot(report, layout)
    words = texts(svg)
    assert "latency per inference (ms, log scale)" in words
    assert "0.1" in words and not any("10^" in w or "$" in w or "e-0" in w for w in words)   # not 10^-1
    assert set(NAMES) <= set(words)
    # the passing budget mark is green, the failing one red, and the legend says which is which
    assert COLORS["PASS"] in svg and COLORS["FAIL"] in svg
    assert {"budget (met)", "budget (exceeded)", "line in box: median", "p90"} <= set(words)


def test_memory_plot_mib_budget_and_missing_value(report: dict[str, Any]) -> None:
    svg = memory_plot(report, WIDE)
    words = texts(svg)
    assert "peak resident memory (MiB = 1024 KiB)" in words
    assert f"{30000 / 1024:.1f}" in words and f"{31000 / 1024:.1f}" in words     # KiB / 1024, labelled MiB
    assert words.count("n/a") == 1 and "n/a: not measured" in words            # the missing steady peak
    assert COLORS["PASS"] in svg and COLORS["FAIL"] in svg and "budget (exceeded)" in words


def test_tradeoff_plot_legend_not_labels_and_percent(report: dict[str, Any]) -> None:
    svg = tradeoff_plot(report, NARROW)
    words = texts(svg)
    assert "accuracy (%)" in words and "97.0" in words        # % as in the eval table, not 0.97
    # each artifact is named once, in the legend (labels beside points would pile up)
    assert [w for w in words if w.startswith("onnx-fp32")] == ["onnx-fp32 (40 KiB)"]
    assert "marker area: artifact size" in words
    same = {**report, "eval": {"schema": "edgeship.eval/2", "entries": {
        k: {**e, "accuracy": 0.97} for k, e in report["eval"]["entries"].items()}}}
    words = texts(tradeoff_plot(same, WIDE))
    # equal accuracies: the cosine, written out (never an offset like +9.999e-1)
    assert "cosine similarity to FP32 (mean; 1 = identical)" in words and any(w.startswith("0.9999") for w in words)


def test_page_is_responsive(report: dict[str, Any], tmp_path: Path) -> None:
    page = render_html(report)
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in page
    svgs = re.findall(r"<svg[^>]*>", page)
    assert len(svgs) == 6                                   # 3 plots, each for a wide and a narrow page
    for tag in svgs:
        assert "viewBox=" in tag and not re.search(r"\s(width|height)=", tag)   # sized by CSS, not fixed
    assert page.count('class="plot wide"') == page.count('class="plot narrow"') == 3
    assert "@media (max-width:640px)" in page and ".plot.wide{display:none}" in page
    # failures first: the failing checks section comes before the tables
    assert page.index("<h2>Failing checks</h2>") < page.index("<h2>Measurements</h2>") < page.index("<svg")
    assert page.index("<h2>Verdicts</h2>") > page.rindex("</svg>")        # the long table comes folded, last
    assert "<details><summary>all 4 checks, failures first</summary>" in page
    assert "peak MiB" in page and "peak MB" not in page


def test_page_renders_byte_for_byte_and_leaves_matplotlib_settings_alone(report: dict[str, Any]) -> None:
    import copy

    import matplotlib

    before = matplotlib.rcParams["font.size"]
    first = render_html(report)
    assert render_html(copy.deepcopy(report)) == first           # report --from reproduces it
    assert matplotlib.rcParams["font.size"] == before
