"""report.html: one self-contained page (inline SVG plots, inline CSS, no scripts, no network).

The verdict and the failing checks come first, then the tables and the plots (plots.py), each
a section in ``SECTIONS``: a new section is one more entry. Readable from a 420 px phone to a
1400 px desktop: a viewport meta, tables that scroll sideways inside their box, and each plot
drawn for a wide and a narrow page (the media query in CSS picks one).
Rendered only from the report dict, like the other reports.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any

from edgeship.exporting.cpuclass import cpu_label
from edgeship.reports.drawing import COLORS, LAYOUTS
from edgeship.reports.fmt import (
    device_label,
    effective_verdict,
    failing,
    failures_first,
    labelled_passes,
    metric_value,
    sig,
)
from edgeship.reports.markdown import check_title, verdict_label
from edgeship.reports.plots import PLOTS

NARROW_MAX_PX = 640   # at or below: the narrow drawings of the plots
CSS = f"""
body{{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;padding:0 1rem;max-width:1100px;color:#1f2328;line-height:1.4}}
h1{{font-size:1.5rem}} h2{{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #d0d7de;padding-bottom:.3rem}}
.scroll{{overflow-x:auto}}
table{{border-collapse:collapse;width:100%;font-size:.85rem}} th,td{{border:1px solid #d0d7de;padding:.3rem .5rem;text-align:left;vertical-align:top}}
th{{background:#f6f8fa}} td.num,th.num{{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}}
td.na{{color:#6e7781;font-style:italic}} td.name{{white-space:nowrap}}
summary{{cursor:pointer;color:#0969da;margin:.5rem 0}}
.badge{{display:inline-block;padding:.1rem .5rem;border-radius:1rem;color:#fff;font-weight:600;font-size:.8rem;white-space:nowrap}}
.verdict{{font-size:1.2rem}} .meta{{color:#656d76;font-size:.8rem}}
.failing li{{margin:.3rem 0}} code{{font-size:.85em;background:#f6f8fa;padding:.1rem .3rem;border-radius:.3rem;word-break:break-all}}
figure{{margin:1rem 0}} figcaption{{color:#656d76;font-size:.85rem}}
.plot svg{{display:block;width:100%;height:auto}}
.side{{display:grid;grid-template-columns:minmax(0,1fr) minmax(0,1fr);gap:1rem}}
@media (max-width:{NARROW_MAX_PX}px){{body{{margin:1rem auto;padding:0 .75rem}} .plot.wide{{display:none}} .side{{grid-template-columns:minmax(0,1fr)}}}}
@media (min-width:{NARROW_MAX_PX + 1}px){{.plot.narrow{{display:none}}}}
"""


def _badge(verdict: str, text: str | None = None) -> str:
    return f'<span class="badge" style="background:{COLORS.get(verdict, "#57606a")}">{html.escape(text or verdict)}</span>'


def _table(head: list[tuple[str, bool]], rows: list[str]) -> str:
    """``head``: (title, numeric); ``rows``: ready ``<tr>`` strings."""
    ths = "".join(f"<th{' class=num' if num else ''}>{html.escape(t)}</th>" for t, num in head)
    return f"<div class=scroll><table><tr>{ths}</tr>{''.join(rows)}</table></div>"


def _prose(text: str) -> str:
    """A gate detail as HTML: ≤/≥ read better than <=/>= in running text."""
    return html.escape(text.replace("<=", "≤").replace(">=", "≥"))


def _num(text: str) -> str:
    return f"<td class=num>{html.escape(text)}</td>" if text else "<td class=na>n/a</td>"


def _failing(report: dict[str, Any]) -> str | None:
    bad = failing(report)
    if not bad:
        return None
    items = []
    for c in bad:
        value = metric_value(c["metric"], c["value"])
        got = (f"{value}, budget {metric_value(c['metric'], c['limit'])}" if value
               else f"budget {metric_value(c['metric'], c['limit'])}")
        rerun = c.get("rerun")
        detail = c["detail"].replace(f"; run `{rerun}`", "") if rerun else c["detail"]
        line = f"{_badge('FAIL', verdict_label(c).split(' ', 1)[-1])} <b>{html.escape(check_title(c))}</b>: {html.escape(got)}. {_prose(detail)}"
        if rerun:
            line += f"<br>re-run: <code>{html.escape(rerun)}</code>"
        items.append(f"<li>{line}</li>")
    return f"<ul class=failing>{''.join(items)}</ul>"


def _checks_table(report: dict[str, Any]) -> str | None:
    rows = []
    for c in failures_first(report["checks"]):
        rows.append(
            f"<tr><td>{_badge(effective_verdict(c), verdict_label(c).split(' ', 1)[-1])}</td>"
            f"<td class=name>{html.escape(device_label(c['device']))}</td><td class=name>{html.escape(c['artifact'])}</td>"
            f"<td class=name>{html.escape(c['metric'])}</td>{_num(metric_value(c['metric'], c['value']))}"
            f"{_num(metric_value(c['metric'], c['limit']))}<td>{_prose(c['detail'])}</td></tr>"
        )
    head = [("verdict", False), ("device", False), ("artifact", False), ("metric", False), ("value", True),
            ("budget", True), ("detail", False)]
    # folded: the failing ones are listed at the top already, and 50 rows would push the plots away
    return (f"<details><summary>all {len(rows)} checks, failures first</summary>{_table(head, rows)}</details>"
            if rows else None)


def _results_table(report: dict[str, Any]) -> str | None:
    rows = []
    for r in report["results"]:
        a = r["artifact"]
        if r.get("status") != "ok":
            rows.append(f"<tr><td>{html.escape(r['device']['name'])}</td><td>{html.escape(a['name'])}</td>"
                        f"<td colspan=7>{_badge('SKIPPED')} {html.escape(str(r.get('skip_reason')))}</td></tr>")
            continue
        s, m = r["summary_ms"], r.get("memory") or {}
        peaks = [v for v in (m.get("init_peak_kb"), m.get("steady_peak_kb")) if v is not None]
        cells = [sig(s.get(k)) for k in ("p50", "p90", "p99", "mean")]
        cells += [str(s["count"]), f"{max(peaks) / 1024:.1f}" if peaks else "", f"{a['size_bytes'] / 1024:.1f}"]
        rows.append(f"<tr><td class=name>{html.escape(r['device']['name'])}</td><td class=name>{html.escape(a['name'])}</td>"
                    f"{''.join(_num(c) for c in cells)}</tr>")
    head = [("device", False), ("artifact", False), ("p50 ms", True), ("p90 ms", True), ("p99 ms", True),
            ("mean ms", True), ("runs", True), ("peak MiB", True), ("size KiB", True)]
    return _table(head, rows) if rows else None


def _figure(draw: Callable[[dict[str, Any], Any], str | None], caption: str) -> Callable[[dict[str, Any]], str | None]:
    def section(report: dict[str, Any]) -> str | None:
        drawings = [(layout.name, draw(report, layout)) for layout in LAYOUTS]
        if not any(svg for _, svg in drawings):
            return None
        plots = "".join(f'<div class="plot {name}">{svg}</div>' for name, svg in drawings if svg)
        return f"<figure>{plots}<figcaption>{html.escape(caption)}</figcaption></figure>"
    return section


SECTIONS: list[tuple[str, Callable[[dict[str, Any]], str | None]]] = [
    ("Failing checks", _failing),
    ("Measurements", _results_table),
    *((title, _figure(draw, caption)) for title, caption, draw in PLOTS),
    ("Verdicts", _checks_table),
]


def _section(report: dict[str, Any]) -> str:
    bad = failing(report)
    counts = ", ".join(f"{n} {html.escape(k)}" for k, n in report["counts"].items() if n)
    summary = f"{len(bad)} of {len(report['checks'])} checks failed ({counts})" if bad else counts
    parts = [f"<p class=verdict>Gate: {_badge(report['verdict'])} — {summary}</p>"]
    parts += [f"<p>⚠️ warning: {html.escape(w)}</p>" for w in report.get("warnings") or []]
    # the verdicts table is folded: a pass on simulated or emulated evidence is named up here
    parts += [f"<p>passed on {html.escape(kind)} evidence: {html.escape(', '.join(names))}</p>"
              for kind, names in labelled_passes(report).items()]
    for title, render in SECTIONS:
        body = render(report)
        if body:
            parts += [f"<h2>{html.escape(title)}</h2>", body]
    return "\n".join(parts)


def render_html(report: dict[str, Any]) -> str:
    body = _section(report)
    base = report.get("compare_to")
    if base:
        body = (f'<div class=side><div><h2>This report ({html.escape(report["created"])})</h2>{body}</div>'
                f'<div><h2>Baseline ({html.escape(base["created"])})</h2>{_section(base)}</div></div>')
    env = next((r.get("env") for r in report["results"] if r.get("env")), None) or {}
    meta = html.escape(f"{cpu_label(env.get('cpu', ''))} · {env.get('platform', '')} · edgeship {report['edgeship']} · {report['created']}")
    return ("<!doctype html><html lang=en><head><meta charset=utf-8>"
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>edgeship: {html.escape(report['model'])}</title>"
            f"<style>{CSS}</style></head><body><h1>edgeship release gate: {html.escape(report['model'])}</h1>"
            f"{body}<p class=meta>{meta}</p></body></html>\n")
