"""The HTML report's per-layer INT8 error section: the worst 20 layers of each artifact.

Drawn from eval.json's ``layers`` section (edgeship/accuracy/report.py): one horizontal bar
per layer, SQNR (dB) against the FP32 model's same tensor (shorter is worse), in ranking order
(worst first), labelled with the PyTorch module and the measured gain if kept float. One panel
per artifact, drawn for each page layout like the other plots (reports/plots.py).
"""

from __future__ import annotations

from typing import Any

from edgeship.reports.drawing import COLORS, figure, pyplot, to_svg

WORST = 20


def layers_plot(report: dict[str, Any], layout: Any) -> str | None:
    layers = ((report.get("eval") or {}).get("layers") or {})
    panels = []
    for artifact, rec in sorted(layers.items()):
        rows = [r for r in rec.get("layers", [])[:WORST] if r.get("sqnr_db") is not None]
        if rows:
            panels.append((artifact, rec, rows))
    if not panels:
        return None
    plt = pyplot()
    height = sum(layout.row_in * len(rows) + 1.2 for _, _, rows in panels)
    fig, axes = figure(plt, layout, height)
    fig.clf()
    axes = fig.subplots(len(panels), 1, squeeze=False,
                        height_ratios=[len(rows) + 3 for _, _, rows in panels])[:, 0]
    for ax, (artifact, rec, rows) in zip(axes, panels):
        y = list(range(len(rows)))
        # the ranking's first layer (the one the fallback reverts first) in the FAIL colour
        ax.barh(y, [r["sqnr_db"] for r in rows], color=[COLORS["FAIL"] if i == 0 else "#0969da" for i in y])
        ax.set_yticks(y, [f"{r['layer']} · {r.get('module') or r['op_type']}" for r in rows])
        ax.invert_yaxis()   # worst (first in ranking) on top
        for i, r in enumerate(rows):
            if r.get("gain_if_float") is not None:
                ax.annotate(f"{100 * r['gain_if_float']:+.0f}% if float", (r["sqnr_db"], i),
                            textcoords="offset points", xytext=(4, -3), fontsize=layout.font - 2)
        kept = rec.get("kept_float") or []
        ax.set_title(f"{artifact} ({rec.get('cpu_class') or 'any CPU'})" + (f"; kept float: {', '.join(kept)}" if kept else ""),
                     fontsize=layout.font, loc="left")
        ax.set_xlabel("SQNR vs FP32 (dB); the label: gain in output error if this layer alone stays float")
        ax.grid(axis="x", alpha=0.3)
    return to_svg(fig)
