"""The HTML report's per-layer INT8 error section: the worst 20 layers of each artifact.

Drawn from eval.json's ``layers`` section (edgeship/accuracy/report.py): one horizontal bar
per layer, SQNR (dB) against the FP32 model's same tensor (shorter is worse), in ranking order
(worst first), labelled with the PyTorch module and the measured gain if kept float.
"""

from __future__ import annotations

from typing import Any

WORST = 20


def layers_plot(report: dict[str, Any]) -> str | None:
    from edgeship.reports.html import _plt, _svg

    layers = ((report.get("eval") or {}).get("layers") or {})
    figs = []
    for artifact, rec in sorted(layers.items()):
        rows = [r for r in rec.get("layers", [])[:WORST] if r.get("sqnr_db") is not None]
        if not rows:
            continue
        plt = _plt()
        fig, ax = plt.subplots(figsize=(9, 0.32 * len(rows) + 1.3))
        y = list(range(len(rows)))
        ax.barh(y, [r["sqnr_db"] for r in rows], color=["#cf222e" if i == 0 else "#0969da" for i in y])
        labels = [f"{r['layer']} · {r.get('module') or r['op_type']}" for r in rows]
        ax.set_yticks(y, labels, fontsize=8)
        ax.invert_yaxis()   # worst (first in ranking) on top
        for i, r in enumerate(rows):
            if r.get("gain_if_float") is not None:
                ax.annotate(f"gain if float {100 * r['gain_if_float']:+.0f}%", (r["sqnr_db"], i),
                            textcoords="offset points", xytext=(4, -3), fontsize=7)
        kept = rec.get("kept_float") or []
        ax.set_title(f"{artifact} ({rec.get('cpu_class') or 'any CPU'}, {rec.get('build', '')})"
                     + (f"; kept float: {', '.join(kept)}" if kept else ""), fontsize=9)
        ax.set_xlabel("SQNR vs FP32 (dB), worst first")
        ax.grid(axis="x", alpha=0.3)
        figs.append(_svg(fig))
    return "</figure><figure>".join(figs) if figs else None
