"""The HTML report's device sections: where an artifact spends its time on a device (``profile
--ops``: the 20 slowest ops as horizontal bars) and where its numbers diverge there (``eval
--device --layers``: the worst-sample cosine of every layer in execution order, a line, with
the first layer below the threshold marked). Drawn for each page layout like the other plots.
"""

from __future__ import annotations

from typing import Any

from edgeship.reports.drawing import COLORS, figure, pyplot, to_svg

TOP = 20


def op_time_plot(report: dict[str, Any], layout: Any) -> str | None:
    panels = []
    for r in report.get("op_profiles") or []:
        ops = [o for o in (r.get("ops") or [])[:TOP] if o.get("p50_ms") is not None]
        if r.get("status") == "ok" and not r.get("times_skipped") and ops:
            panels.append((r, ops))
    if not panels:
        return None
    plt = pyplot()
    fig, _ = figure(plt, layout, sum(layout.row_in * len(ops) + 1.2 for _, ops in panels))
    fig.clf()
    axes = fig.subplots(len(panels), 1, squeeze=False, height_ratios=[len(ops) + 3 for _, ops in panels])[:, 0]
    for ax, (r, ops) in zip(axes, panels):
        y = list(range(len(ops)))
        ax.barh(y, [1000 * o["p50_ms"] for o in ops], color="#0969da")
        ax.set_yticks(y, [f"{o['name']} · {o['op_type']}" for o in ops])
        ax.invert_yaxis()   # slowest on top
        lat = r.get("latency") or {}
        sub = (f"; ops sum {lat['coverage']:.0%} of the median latency" if lat.get("coverage") is not None else "")
        ax.set_title(f"{r['artifact']['name']} on {r['device']['name']} ({r.get('runs')} profiled runs{sub})",
                     fontsize=layout.font, loc="left")
        ax.set_xlabel("p50 time per run (µs)")
        ax.grid(axis="x", alpha=0.3)
    return to_svg(fig)


def fidelity_line_plot(report: dict[str, Any], layout: Any) -> str | None:
    recs = [r for _, r in sorted(((report.get("eval") or {}).get("device_layers") or {}).items())
            if r.get("status") == "ok" and r.get("layers")]
    if not recs:
        return None
    plt = pyplot()
    fig, _ = figure(plt, layout, 2.4 * len(recs) + 0.6)
    fig.clf()
    axes = fig.subplots(len(recs), 1, squeeze=False)[:, 0]
    for ax, r in zip(axes, recs):
        rows = r["layers"]
        x = list(range(len(rows)))
        ax.plot(x, [row["cosine_min"] for row in rows], marker="o", color="#0969da", label="worst-sample cosine")
        ax.axhline(r["threshold"], color=COLORS["SKIPPED"], linestyle="--", label=f"threshold {r['threshold']}")
        first = r.get("first_divergent")
        if first is not None:
            i = next(i for i, row in enumerate(rows) if row["layer"] == first["layer"])
            ax.plot([i], [first["cosine_min"]], marker="X", markersize=12, color=COLORS["FAIL"], linestyle="none",
                    label=f"first divergent: {first['layer']} ({first.get('module') or first['op_type']})")
        ax.set_xticks(x, [row.get("module") or row["layer"] for row in rows], rotation=45, ha="right",
                      fontsize=layout.font - 2)
        ax.set_ylabel("cosine vs FP32")
        ax.set_title(f"{r['artifact']} on {r['device']} ({len(rows)} layers, vs {r['reference']['artifact']})",
                     fontsize=layout.font, loc="left")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=layout.font - 2, loc="lower left")
    return to_svg(fig)
