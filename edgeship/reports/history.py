"""``edgeship history``: the sessions of every device x artifact over commits, as a terminal
table and as one self-contained HTML page (inline CSS and SVG, no scripts, no network, like
report.html), readable from a 420 px phone to a 1400 px desktop.

Per device x artifact, on one time-ordered axis labelled by commit: p50 and p90 latency with
p90's interval band (the gate's interval when it judged the session, else the device's
session-noise interval), each session's mark coloured by the gate's verdict, the budget
lines, peak memory, size, and the cosine/accuracy drop of every eval; the changes found by
the gate's own test (edgeship/gating/trends.py) are drawn as a line at the session they were
first seen, and listed first, each naming its commit. Rendered only from a ``Trends``.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any

from edgeship.gating.trends import Series, Trends, change_line, short
from edgeship.reports.drawing import COLORS, LAYOUTS, MEDIAN, NARROW, P90, WIDE, Layout, pyplot, to_svg
from edgeship.reports.fmt import sig
from edgeship.reports.html import CSS

CHANGE = "#bc4c00"
BUDGET = "#cf222e"
UNGATED = "#ffffff"
CONTENDED = "#8250df"


# -- terminal -----------------------------------------------------------------------------------

def history_table(tr: Trends) -> Any:
    """One row per device x artifact: sessions, first and latest p90, latest verdict, changes."""
    from edgeship.ui.table import Column, Table

    t = Table([
        Column("device", "device"), Column("artifact", "artifact"),
        Column("sessions", "sessions", "number"), Column("commits", "commits", "number", priority=3),
        Column("first_p90_ms", "first p90", "time", priority=2), Column("last_p90_ms", "last p90", "time"),
        Column("verdict", "last verdict"),
        Column("memory_mb", "peak MiB", "number", priority=4), Column("size_bytes", "size", "bytes", priority=4),
        Column("cosine", "cosine", "number", priority=5, digits=5),
        Column("changes", "changes (at commit)", wrap=True),
    ], title=f"history of {tr.model}" + (f" since {tr.since}" if tr.since else ""))
    for s in tr.series:
        prof = [p for p in s.profiled if p["p90_ms"] is not None]
        last = s.points[-1]
        gated = [p for p in s.points if p["verdict"]]
        cos = [p["cosine"] for p in s.points if p["cosine"] is not None]
        mem = [p["memory_mb"] for p in prof if p["memory_mb"] is not None]
        sizes = [p["size_bytes"] for p in s.points if p["size_bytes"] is not None]
        changes = "; ".join(f"{100 * p['change']['shift']:+.0f}% at {short(p['change']['commit'])}"
                            + (" (unconfirmed)" if p["change"]["kind"] == "unconfirmed" else "") for p in s.steps)
        if s.excursions:
            changes += f"{'; ' if changes else ''}{len(s.excursions)} one-session excursion(s)"
        verdict = gated[-1]["verdict"] if gated else None
        t.add_row(style={"FAIL": "red", "MARGINAL": "yellow"}.get(verdict or ""),
                  device=s.device, artifact=s.artifact, sessions=len(s.points),
                  commits=len({p["commit"] for p in s.points if p["commit"]}),
                  first_p90_ms=prof[0]["p90_ms"] if prof else None, last_p90_ms=prof[-1]["p90_ms"] if prof else None,
                  verdict=verdict or ("not gated" if last else None), memory_mb=mem[-1] if mem else None,
                  size_bytes=sizes[-1] if sizes else None, cosine=cos[-1] if cos else None, changes=changes or "none")
    return t


def change_lines(tr: Trends) -> list[str]:
    """A line per step, and per series a count of its one-session excursions (``--json`` lists them)."""
    out = []
    for s in tr.series:
        out += [change_line(s, p) for p in s.steps]
        if s.excursions:
            out.append(f"{s.device} · {s.artifact}: {len(s.excursions)} session(s) outside the interval of those "
                       "before, the next back within it (one-session excursions; --json lists them)")
    return out


# -- plots --------------------------------------------------------------------------------------

def _panels(s: Series) -> list[tuple[str, str, Callable[[dict[str, Any]], float | None], str | None]]:
    """(title, axis label, value of a point, budget metric) of each panel that has a value."""
    def val(key: str, factor: float = 1.0) -> Callable[[dict[str, Any]], float | None]:
        return lambda p: None if p.get(key) is None else p[key] * factor

    panels = [("latency", "latency (ms)", val("p90_ms"), "latency_p90_ms"),
              ("memory", "peak memory (MiB)", val("memory_mb"), "peak_memory_mb"),
              ("size", "size (KiB)", val("size_bytes", 1 / 1024), "size_kb"),
              ("cosine", "cosine to FP32", val("cosine"), "cosine_mean"),
              ("accuracy", "accuracy drop (pt)", val("accuracy_drop", 100.0), "accuracy_drop")]
    return [p for p in panels if any(p[2](q) is not None for q in s.points)]


def _commit_ticks(s: Series, layout: Layout) -> tuple[list[int], list[str]]:
    """A tick at the first session of each commit, thinned so the labels cannot collide."""
    ticks, labels, prev = [], [], object()
    for i, p in enumerate(s.points):
        if p["commit"] != prev:
            ticks.append(i)
            labels.append(short(p["commit"])[:7] + ("*" if p.get("dirty") else ""))
            prev = p["commit"]
    room = 12 if layout is WIDE else 5
    if len(ticks) > room:   # keep every k-th, always the commits where a change was seen
        k = -(-len(ticks) // room)
        changed = {i for i, p in enumerate(s.points) if p["change"]}
        keep = [j for j, t in enumerate(ticks) if j % k == 0 or t in changed]
        ticks, labels = [ticks[j] for j in keep], [labels[j] for j in keep]
    return ticks, labels


def _change_at(s: Series, i: int) -> int:
    """Where to draw the change first seen at point ``i``: before the first session of its
    commit (an eval may have come first), so the line meets the commit's tick."""
    commit = s.points[i]["commit"]
    while i > 0 and s.points[i - 1]["kind"] != "profile" and commit and s.points[i - 1]["commit"] == commit:
        i -= 1
    return i


def series_plot(s: Series, layout: Layout) -> str | None:
    panels = _panels(s)
    if not panels:
        return None
    plt = pyplot()
    rc = {"font.size": layout.font, "axes.labelsize": layout.font, "xtick.labelsize": layout.font - 1,
          "ytick.labelsize": layout.font - 1, "legend.fontsize": layout.font - 1}
    with plt.rc_context(rc):
        return _draw(plt, s, panels, layout)


def _draw(plt: Any, s: Series, panels: list[Any], layout: Layout) -> str:
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    heights = [2.4 if name == "latency" else 1.3 for name, *_ in panels]
    if layout is NARROW:
        heights = [h * 1.15 for h in heights]
    legend_rows = 4 if layout is WIDE else 8
    fig, axes = plt.subplots(len(panels), 1, figsize=(layout.width_in, sum(heights) + 0.8 + legend_rows * layout.font * 1.75 / 72),
                             sharex=True, layout="constrained", gridspec_kw={"height_ratios": heights}, squeeze=False)
    axes = [a[0] for a in axes]
    x = list(range(len(s.points)))
    nan = float("nan")
    changes = [_change_at(s, i) for i, p in enumerate(s.points) if p["change"] and p["change"]["kind"] != "one session"]
    excursions = [i for i, p in enumerate(s.points) if p["change"] and p["change"]["kind"] == "one session"]
    seen: set[str] = set()
    for ax, (name, label, value, metric) in zip(axes, panels):
        ys = [value(p) for p in s.points]
        pts = [(i, y) for i, y in enumerate(ys) if y is not None]
        if name == "latency":
            lo = [nan if p["p90_low_ms"] is None else p["p90_low_ms"] for p in s.points]
            hi = [nan if p["p90_high_ms"] is None else p["p90_high_ms"] for p in s.points]
            if any(p["p90_low_ms"] is not None for p in s.points):
                ax.fill_between(x, lo, hi, color=P90, alpha=0.15, linewidth=0, step="mid")
                seen.add("band")
            p50 = [(i, p["p50_ms"]) for i, p in enumerate(s.points) if p["p50_ms"] is not None]
            if p50:
                ax.plot(*zip(*p50), color=MEDIAN, linewidth=1.0, linestyle=":", marker=".", markersize=4)
                seen.add("p50")
        if pts:
            ax.plot(*zip(*pts), color=P90 if name == "latency" else "#24292f", linewidth=1.3, zorder=2)
        for i, y in pts:
            p = s.points[i]
            v = (p.get("verdicts") or {}).get(metric) if metric else None
            face = COLORS.get(v, UNGATED) if v else UNGATED
            edge = CONTENDED if p["contended"] and name == "latency" else "#24292f"
            ax.plot([i], [y], marker="o", markersize=6 if layout is WIDE else 5, markerfacecolor=face,
                    markeredgecolor=edge, markeredgewidth=1.5 if edge == CONTENDED else 0.8, linestyle="none", zorder=3)
            seen.add(v or "ungated")
            if edge == CONTENDED:
                seen.add("contended")
        budget = [(i, (p.get("budgets") or {}).get(metric)) for i, p in enumerate(s.points)]
        budget = [(i, b * (100.0 if metric == "accuracy_drop" else 1.0)) for i, b in budget if isinstance(b, (int, float))]
        if budget:
            ax.step(*zip(*budget), where="mid", color=BUDGET, linestyle=(0, (6, 3)), linewidth=1.4, alpha=0.8, zorder=1)
            seen.add("budget")
        for i in changes:
            ax.axvline(i - 0.5, color=CHANGE, linewidth=1.8, zorder=1)
            seen.add("change")
        if name == "latency" and excursions:
            ax.plot(excursions, [s.points[i]["p90_ms"] for i in excursions], marker="o", markersize=13,
                    markerfacecolor="none", markeredgecolor=CHANGE, markeredgewidth=1.5, linestyle="none", zorder=4)
            seen.add("excursion")
        ax.set_ylabel(label if layout is WIDE else label.replace(" (", "\n("))
        ax.grid(axis="y", alpha=0.3)
        ax.yaxis.set_major_locator(MaxNLocator(nbins=4 if layout is NARROW or name != "latency" else 6))
        digits = 6 if name == "cosine" else 3     # cosines differ in the 4th to 6th digit
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos, d=digits: sig(v, d)))
    ticks, labels = _commit_ticks(s, layout)
    ax = axes[-1]
    ax.set_xticks(ticks, labels, rotation=0 if layout is WIDE and len(ticks) <= 8 else 40,
                  ha="center" if layout is WIDE and len(ticks) <= 8 else "right", family="monospace")
    ax.set_xlim(-0.6, len(s.points) - 0.4)
    ax.set_xlabel(f"{len(s.points)} sessions, oldest first; ticks: the first session of each commit (* dirty)"
                  if layout is WIDE else f"{len(s.points)} sessions; ticks: commits")
    legend = {
        "p50": Line2D([], [], color=MEDIAN, linestyle=":", marker=".", linewidth=1.0, label="p50"),
        "band": Patch(facecolor=P90, alpha=0.15, label="p90 interval"),
        "budget": Line2D([], [], color=BUDGET, linestyle=(0, (6, 3)), linewidth=1.4, alpha=0.8, label="budget"),
        "change": Line2D([], [], color=CHANGE, linewidth=1.8, label="change first seen"),
        "excursion": Line2D([], [], marker="o", markersize=10, markerfacecolor="none", markeredgecolor=CHANGE,
                            markeredgewidth=1.5, linestyle="none", label="one-session excursion"),
        **{v: Line2D([], [], marker="o", linestyle="none", markerfacecolor=COLORS[v], markeredgecolor="#24292f",
                     label=v) for v in ("PASS", "MARGINAL", "FAIL")},
        "ungated": Line2D([], [], marker="o", linestyle="none", markerfacecolor=UNGATED, markeredgecolor="#24292f",
                          label="not gated"),
        "contended": Line2D([], [], marker="o", linestyle="none", markerfacecolor=UNGATED, markeredgecolor=CONTENDED,
                            markeredgewidth=1.5, label="contended"),
    }
    handles = [Line2D([], [], color=P90, linewidth=1.3, label="p90")] + [h for k, h in legend.items() if k in seen]
    fig.legend(handles=handles, loc="outside lower center", ncol=4 if layout is WIDE else 2, frameon=False,
               handlelength=1.6)
    return to_svg(fig)


# -- page ---------------------------------------------------------------------------------------

def _badge(verdict: str | None) -> str:
    text = verdict or "not gated"
    color = COLORS.get(verdict or "", "#57606a")
    return f'<span class="badge" style="background:{color}">{html.escape(text)}</span>'


def _num(v: Any, digits: int = 3) -> str:
    return f"<td class=num>{html.escape(sig(v, digits))}</td>" if isinstance(v, (int, float)) else "<td class=na>n/a</td>"


def _changes(tr: Trends) -> str:
    items = []
    for s in tr.series:
        for p in s.steps:
            c = p["change"]
            head = f"{100 * c['shift']:+.0f}% {c['statistic']} at commit <code>{html.escape(short(c['commit']))}</code>"
            items.append(f'<li><span class="badge" style="background:{CHANGE}">change</span> '
                         f"<b>{html.escape(s.device)} · {html.escape(s.artifact)}</b>: {head} — "
                         f"{html.escape(change_line(s, p, named=False))}</li>")
    odd = sum(len(s.excursions) for s in tr.series)
    note = (f"<p>{odd} session(s) lay outside the interval of the sessions before them, and the next session was "
            "back within it: one-session excursions (ringed in the plots, listed under Sessions), not steps.</p>"
            if odd else "")
    if not items:
        return ("<p>No change found: no session stayed outside the prediction interval of the sessions before it "
                f"(the gate's session-to-session test, docs/gate.md).</p>{note}")
    return f"<ul class=failing>{''.join(items)}</ul>{note}"


def _sessions_table(tr: Trends) -> str:
    head = ["device", "artifact", "kind", "time (UTC)", "commit", "p50 ms", "p90 ms", "p90 interval ms", "peak MiB",
            "size KiB", "cosine", "verdict", "change"]
    nums = {"p50 ms", "p90 ms", "peak MiB", "size KiB", "cosine"}
    ths = "".join(f"<th{' class=num' if h in nums else ''}>{html.escape(h)}</th>" for h in head)
    rows = []
    for s in tr.series:
        for p in s.points:
            band = (f"{sig(p['p90_low_ms'])}–{sig(p['p90_high_ms'])}" if p["p90_low_ms"] is not None
                    and p["p90_high_ms"] is not None else "")
            change = f"{100 * p['change']['shift']:+.0f}% ({p['change']['kind']})" if p["change"] else ""
            commit = short(p["commit"]) + (" (dirty)" if p.get("dirty") else "")
            size = None if p["size_bytes"] is None else p["size_bytes"] / 1024
            rows.append(
                f"<tr><td class=name>{html.escape(s.device)}</td><td class=name>{html.escape(s.artifact)}</td>"
                f"<td>{html.escape(p['kind'])}</td><td class=name>{html.escape(str(p['created'])[:19])}</td>"
                f"<td class=name><code>{html.escape(commit)}</code></td>{_num(p['p50_ms'])}{_num(p['p90_ms'])}"
                f"<td class=name>{html.escape(band)}</td>{_num(p['memory_mb'])}{_num(size)}{_num(p['cosine'], 5)}"
                f"<td>{_badge(p['verdict'])}</td><td>{html.escape(change)}</td></tr>")
    return (f"<details><summary>every session ({len(rows)})</summary><div class=scroll><table><tr>{ths}</tr>"
            f"{''.join(rows)}</table></div></details>")


def _series_section(s: Series) -> str:
    drawings = [(layout.name, series_plot(s, layout)) for layout in LAYOUTS]
    prof = [p for p in s.profiled if p["p90_ms"] is not None]
    gated = [p for p in s.points if p["verdict"]]
    commits = len({p["commit"] for p in s.points if p["commit"]})
    facts = [f"{len(s.points)} sessions", f"{commits} commit(s)"]
    if prof:
        facts.append(f"p90 {sig(prof[0]['p90_ms'])} → {sig(prof[-1]['p90_ms'])} ms")
    if s.steps:
        facts.append(f"{len(s.steps)} change(s)")
    if s.excursions:
        facts.append(f"{len(s.excursions)} one-session excursion(s)")
    verdict = _badge(gated[-1]["verdict"]) if gated else _badge(None)
    plots = "".join(f'<div class="plot {name}">{svg}</div>' for name, svg in drawings if svg)
    caption = ("p90 (blue, its interval shaded) and p50 (dotted); each session's mark coloured by the gate's verdict "
               "on that metric (white: not gated, purple rim: the runner was contended); dashed red: the budget; "
               "orange line: a change, first seen in the commit right of it")
    return (f"<h2>{html.escape(s.device)} · {html.escape(s.artifact)}</h2><p>latest {verdict} — "
            f"{html.escape(', '.join(facts))}</p><figure>{plots}<figcaption>{html.escape(caption)}</figcaption></figure>")


def render_history_html(tr: Trends) -> str:
    sessions = sum(len(s.points) for s in tr.series)
    commits = len({p["commit"] for s in tr.series for p in s.points if p["commit"]})
    scope = f" since {tr.since}" if tr.since else ""
    head = (f"<p class=verdict>{sessions} sessions of {len(tr.series)} device × artifact series over {commits} "
            f"commit(s){html.escape(scope)}</p>")
    parts = [head, "<h2>Changes</h2>", _changes(tr)]
    parts += [f"<p class=meta>{html.escape(line)}</p>" for line in tr.noise.values()]
    parts += [_series_section(s) for s in tr.series]
    parts += ["<h2>Sessions</h2>", _sessions_table(tr)]
    return ("<!doctype html><html lang=en><head><meta charset=utf-8>"
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>edgeship history: {html.escape(tr.model)}</title>"
            f"<style>{CSS}</style></head><body><h1>edgeship history: {html.escape(tr.model)}</h1>"
            f"{''.join(parts)}</body></html>\n")
