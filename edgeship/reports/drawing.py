"""What every plot of report.html shares: colours, the two page layouts, matplotlib loaded
lazily (the ``report`` extra) and a figure turned into a size-free inline SVG."""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

COLORS = {"PASS": "#1a7f37", "FAIL": "#cf222e", "MARGINAL": "#9a6700", "SKIPPED": "#6e7781"}
BUDGET_LABEL = {"PASS": "budget (met)", "FAIL": "budget (exceeded)", "MARGINAL": "budget (met, marginal)"}
P90 = "#0969da"
MEDIAN = "#24292f"
LOG_RATIO = 20   # a log axis only when the values span more than this factor


@dataclass(frozen=True)
class Layout:
    name: str
    width_in: float      # figure width; at 96 px/in the drawing's natural width in px
    font: float          # pt
    row_in: float        # height per row of a horizontal plot
    legend_cols: int


WIDE = Layout("wide", 10.0, 10.0, 0.36, 3)
# narrow: 3.2 in (307 px) scaled to a phone's column (~400 px): 11 pt text shows at ~19 px
NARROW = Layout("narrow", 3.2, 11.0, 0.5, 1)
LAYOUTS = (WIDE, NARROW)


def pyplot() -> Any:
    from edgeship.lazy import require

    mpl = require("matplotlib", "report", "the HTML report")
    mpl.use("Agg")
    mpl.rcParams["svg.hashsalt"] = "edgeship"     # stable element ids: same report, same bytes
    mpl.rcParams["svg.fonttype"] = "none"          # text stays text (small, searchable)
    import matplotlib.pyplot as plt

    return plt


def to_svg(fig: Any) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None})   # constrained layout already fits the labels in
    import matplotlib.pyplot as plt

    plt.close(fig)
    text = buf.getvalue()
    text = text[text.index("<svg"):]
    # drop the RDF metadata block: it only names matplotlib and carries namespace URLs
    start, end = text.find("<metadata>"), text.find("</metadata>")
    if start != -1 and end != -1:
        text = text[:start] + text[end + len("</metadata>"):]
    # no fixed size: the viewBox keeps the aspect ratio, CSS gives the width
    head_end = text.index(">")
    head = text[:head_end]
    import re

    head = re.sub(r'\s(width|height)="[^"]*"', "", head, count=2)
    return head + ' preserveAspectRatio="xMidYMid meet"' + text[head_end:]


def figure(plt: Any, layout: Layout, height_in: float) -> tuple[Any, Any]:
    return plt.subplots(figsize=(layout.width_in, height_in), layout="constrained")
