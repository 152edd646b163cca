"""The plots of report.html, drawn with matplotlib into inline SVG.

Each plot is drawn twice, for a wide and a narrow page (``LAYOUTS``): an SVG scaled down to a
phone's width shrinks its text with it, so the narrow drawing has its own size and fonts and
the page shows one or the other by CSS media query. The SVGs carry a viewBox and no width or
height, so they fill their column at any width.

Readability rules: no text labels inside the axes (a legend below the plot names every mark,
so labels cannot pile up), units on every axis and the tables' units (ms, MiB, %), plain tick
labels (0.1 not 10^-1), budget marks coloured by their verdict, a missing value drawn as
missing ("n/a"), never as 0.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from edgeship.reports.drawing import (
    BUDGET_LABEL,
    COLORS,
    LOG_RATIO,
    MEDIAN,
    NARROW,
    P90,
    WIDE,
    Layout,
    figure,
    pyplot,
    to_svg,
)
from edgeship.reports.fmt import effective_verdict, sig
from edgeship.reports.html_device import fidelity_line_plot, op_time_plot
from edgeship.reports.html_layers import layers_plot

Plot = Callable[[dict[str, Any], Layout], "str | None"]


def _drawn(plot: Plot) -> Plot:
    """Run ``plot`` with the layout's font sizes, leaving matplotlib's global settings as they were."""
    @functools.wraps(plot)
    def run(report: dict[str, Any], layout: Layout) -> str | None:
        plt = pyplot()
        rc = {"font.size": layout.font, "axes.labelsize": layout.font, "xtick.labelsize": layout.font - 1,
              "ytick.labelsize": layout.font - 1, "legend.fontsize": layout.font - 1}
        with plt.rc_context(rc):
            return plot(report, layout)
    return run


def _legend_in(n: int, layout: Layout, title: bool = False) -> float:
    """Height (in) a legend of ``n`` entries takes below the plot."""
    rows = -(-n // layout.legend_cols) + (1 if title else 0)
    return 0.2 + rows * layout.font * 1.75 / 72


def _legend_below(ax: Any, handles: list[Any], layout: Layout, **kw: Any) -> None:
    # "outside": constrained layout reserves the room below the axis label, nothing is covered
    ax.figure.legend(handles=handles, loc="outside lower center", ncol=layout.legend_cols, frameon=False,
                     handlelength=1.6, **kw)


def _ms_axis(axis: Any, values: list[float], scale_setter: Callable[[str], None], layout: Layout) -> bool:
    """Log scale when ``values`` span more than LOG_RATIO; plain tick labels either way."""
    from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

    positive = [v for v in values if v > 0]
    log = bool(positive) and max(positive) / min(positive) > LOG_RATIO
    if log:
        scale_setter("log")
        axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        axis.set_minor_formatter(NullFormatter())
    elif layout is NARROW:
        axis.set_major_locator(MaxNLocator(nbins=4))
    axis.set_major_formatter(FuncFormatter(lambda v, _pos: sig(v, 2)))
    return log


def _row_label(r: dict[str, Any], many_devices: bool) -> str:
    return f"{r['device']['name']} · {r['artifact']['name']}" if many_devices else r["artifact"]["name"]


def _budget_checks(report: dict[str, Any], r: dict[str, Any], metric: Callable[[str], bool]) -> list[dict[str, Any]]:
    return [c for c in report["checks"] if metric(c["metric"]) and c["device"] == r["device"]["name"]
            and c["artifact"] == r["artifact"]["name"]]


def _budget_handles(verdicts: set[str], marker: str) -> list[Any]:
    from matplotlib.lines import Line2D

    return [Line2D([], [], color=COLORS[v], marker=marker, linestyle="none", markersize=12, mew=2.5, label=BUDGET_LABEL[v])
            for v in ("PASS", "MARGINAL", "FAIL") if v in verdicts]


@_drawn
def latency_plot(report: dict[str, Any], layout: Layout) -> str | None:
    rows = [r for r in report["results"] if r.get("status") == "ok" and (r.get("timing") or {}).get("samples_ns")]
    if not rows:
        return None
    plt = pyplot()
    import numpy as np
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    many = len({r["device"]["name"] for r in rows}) > 1
    data = [np.asarray(r["timing"]["samples_ns"], dtype=float) / 1e6 for r in rows]
    fig, ax = figure(plt, layout, layout.row_in * len(rows) + 0.9 + _legend_in(6, layout))
    ax.boxplot(data, orientation="horizontal", tick_labels=[_row_label(r, many) for r in rows], showfliers=False,
               whis=(1, 99), widths=0.55, patch_artist=True,
               boxprops={"facecolor": "#ddf4ff", "edgecolor": "#57606a"}, medianprops={"color": MEDIAN, "linewidth": 1.8})
    spread = [float(np.percentile(d, q)) for d in data for q in (1, 99)]
    verdicts: set[str] = set()
    for i, (r, d) in enumerate(zip(rows, data), start=1):
        ax.plot([float(np.percentile(d, 90))], [i], marker="D", color=P90, markersize=5, linestyle="none")
        for c in _budget_checks(report, r, lambda m: m.startswith("latency_")):
            v = effective_verdict(c)
            verdicts.add(v)
            spread.append(c["limit"])
            ax.plot([c["limit"]], [i], marker="|", color=COLORS[v], markersize=20, mew=2.5, linestyle="none")
    log = _ms_axis(ax.xaxis, spread, ax.set_xscale, layout)
    ax.invert_yaxis()   # the first row on top, as in the tables
    ax.set_xlabel("latency per inference (ms" + (", log scale)" if log else ")"))
    ax.grid(axis="x", alpha=0.3, which="major")
    handles = [Patch(facecolor="#ddf4ff", edgecolor="#57606a", label="box: p25–p75"),
               Line2D([], [], color="#57606a", label="whiskers: p1–p99"),
               Line2D([], [], color=MEDIAN, linewidth=1.8, label="line in box: median"),
               Line2D([], [], color=P90, marker="D", markersize=5, linestyle="none", label="p90"),
               *_budget_handles(verdicts, "|")]
    _legend_below(ax, handles, layout)
    return to_svg(fig)


def fidelity(points: list[dict[str, Any]]) -> tuple[str, str, Callable[[dict[str, Any]], float | None]]:
    """(axis label, unit, value of an eval entry): accuracy in % (as the eval table prints it),
    else, when every accuracy is the same or absent, the mean cosine similarity to the FP32
    reference, which still separates the artifacts."""
    accs = {round(p["accuracy"], 9) for p in points if p.get("accuracy") is not None}
    if len(accs) > 1:
        return "accuracy (%)", "%", lambda e: None if e.get("accuracy") is None else 100 * e["accuracy"]
    return "cosine similarity to FP32 (mean; 1 = identical)", "", lambda e: e.get("cosine_mean")


@_drawn
def tradeoff_plot(report: dict[str, Any], layout: Layout) -> str | None:
    from edgeship.gating.evidence import eval_entries

    ev = eval_entries(report.get("eval"))
    pts = []
    for r in report["results"]:
        # the entry evaluated on the same device, else the one evaluated on this host
        e = ev.get((r["device"]["name"], r["artifact"]["name"])) or ev.get(("local", r["artifact"]["name"]))
        s = r.get("summary_ms") or {}
        if r.get("status") != "ok" or not e or e.get("status") != "ok" or s.get("p90") is None:
            continue
        pts.append((r, s["p90"], e))
    label, _unit, value = fidelity([e for _, _, e in pts])
    pts = [(r, x, value(e)) for r, x, e in pts if value(e) is not None]
    if not pts:
        return None
    plt = pyplot()
    from matplotlib.lines import Line2D
    from matplotlib.ticker import ScalarFormatter

    many = len({r["device"]["name"] for r, _, _ in pts}) > 1
    biggest = max(r["artifact"]["size_bytes"] for r, _, _ in pts)
    fig, ax = figure(plt, layout, (4.2 if layout is WIDE else 3.2) + _legend_in(len(pts), layout, title=True))
    cmap = plt.get_cmap("tab10")
    markers = "osD^vP*Xh<>p"
    handles = []
    for i, (r, x, y) in enumerate(pts):
        color, marker = cmap(i % 10), markers[i % len(markers)]
        size = r["artifact"]["size_bytes"]
        ax.scatter([x], [y], s=(40 + 360 * size / biggest) * (1.0 if layout is WIDE else 0.6), color=color, marker=marker, alpha=0.6, edgecolors="#24292f",
                   linewidths=0.6)
        handles.append(Line2D([], [], color=color, marker=marker, linestyle="none", markersize=8, markeredgecolor="#24292f",
                              markeredgewidth=0.6, label=f"{_row_label(r, many)} ({size / 1024:.0f} KiB)"))
    log = _ms_axis(ax.xaxis, [x for _, x, _ in pts], ax.set_xscale, layout)
    ax.set_xlabel("p90 latency (ms" + (", log scale)" if log else ")"))
    ax.set_ylabel(label)
    fmt = ScalarFormatter(useOffset=False)   # 0.99998, never "+9.9998e-1"
    fmt.set_scientific(False)
    ax.yaxis.set_major_formatter(fmt)
    ax.margins(x=0.12, y=0.15)
    ax.grid(alpha=0.3)
    _legend_below(ax, handles, layout, title="marker area: artifact size", title_fontsize=layout.font - 1)
    return to_svg(fig)


@_drawn
def memory_plot(report: dict[str, Any], layout: Layout) -> str | None:
    rows = [r for r in report["results"] if r.get("status") == "ok" and r.get("memory")
            and any(r["memory"].get(k) is not None for k in ("init_peak_kb", "steady_peak_kb"))]
    if not rows:
        return None
    plt = pyplot()
    import numpy as np
    from matplotlib.patches import Patch

    many = len({r["device"]["name"] for r in rows}) > 1
    fig, ax = figure(plt, layout, layout.row_in * 1.3 * len(rows) + 0.9 + _legend_in(5, layout))
    y = np.arange(len(rows))
    series = (("init_peak_kb", "peak after init", "#54aeff", "#0b1f33", -0.2),
              ("steady_peak_kb", "peak in steady state", "#0550ae", "#ffffff", 0.2))
    budgets = [(i, c) for i, r in enumerate(rows) for c in _budget_checks(report, r, lambda m: m == "peak_memory_mb")]
    values = [r["memory"][k] / 1024 for r in rows for k, *_ in series if r["memory"].get(k) is not None]
    xmax = max(values + [c["limit"] for _, c in budgets]) * 1.12 or 1.0
    missing = False
    for i, r in enumerate(rows):
        for key, _label, color, ink, dy in series:
            kb = r["memory"].get(key)
            if kb is None:     # not measured: say so, never a zero-length bar
                missing = True
                ax.text(0, i + dy, " n/a", va="center", ha="left", color="#6e7781", fontsize=layout.font - 1, style="italic")
                continue
            mib = kb / 1024
            ax.barh(i + dy, mib, height=0.38, color=color)
            # the value inside the bar's end, clear of budget marks beyond it; outside only when the bar is short
            inside = mib > 0.25 * xmax
            ax.text(mib, i + dy, f" {mib:.1f} " if inside else f" {mib:.1f}", va="center", ha="right" if inside else "left",
                    fontsize=layout.font - 2, color=ink if inside else "#24292f")
    verdicts: set[str] = set()
    for i, c in budgets:
        v = effective_verdict(c)
        verdicts.add(v)
        ax.vlines(c["limit"], i - 0.45, i + 0.45, colors=COLORS[v], linewidth=2.5)
    ax.set_yticks(y, [_row_label(r, many) for r in rows])
    ax.invert_yaxis()
    ax.set_xlim(0, xmax)
    ax.set_xlabel("peak resident memory (MiB = 1024 KiB)")
    ax.grid(axis="x", alpha=0.3)
    handles = [Patch(color=color, label=label) for _k, label, color, _ink, _dy in series]
    handles += _budget_handles(verdicts, "|")
    if missing:
        handles.append(Patch(color="none", label="n/a: not measured"))
    _legend_below(ax, handles, layout)
    return to_svg(fig)


PLOTS: list[tuple[str, str, Callable[[dict[str, Any], Layout], str | None]]] = [
    ("Latency distribution", "every measured run; the budget mark is coloured by its verdict", latency_plot),
    ("Fidelity vs latency", "up and left is better; marker area shows the artifact's size", tradeoff_plot),
    ("Memory: init vs steady state", "the gate compares the larger of the two with the budget", memory_plot),
    ("Per-layer INT8 error (worst 20)",
     "edgeship explain: the worst-first ranking the accuracy-aware fallback reverts layers in",
     lambda report, layout: _layers(report, layout)),
    ("Per-op time on the device (slowest 20)",
     "edgeship profile --ops: the runtime's profiler in a separate run, p50 per run; never a latency verdict",
     lambda report, layout: _drawn(op_time_plot)(report, layout)),
    ("Per-layer fidelity on the device",
     "edgeship eval --device --layers: each layer's output vs the FP32 model's same tensor; X marks the first divergent",
     lambda report, layout: _drawn(fidelity_line_plot)(report, layout)),
]


def _layers(report: dict[str, Any], layout: Layout) -> str | None:
    return _drawn(layers_plot)(report, layout)
