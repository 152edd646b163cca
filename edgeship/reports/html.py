"""report.html: one self-contained page (inline SVG plots, inline CSS, no network fetches).

Plots, drawn with matplotlib into SVG strings:
- latency distribution of every artifact on every device, with its budget line;
- the trade-off of fidelity (accuracy, else cosine) against p90 latency, marker area by
  artifact size, so the Pareto choice among backend x precision is visible;
- peak memory after init vs in steady state.
Rendered only from the report dict, like the other reports.
"""

from __future__ import annotations

import html
import io
from typing import Any

from edgeship.cpuclass import cpu_label
from edgeship.reports.markdown import verdict_label

COLORS = {"PASS": "#1a7f37", "FAIL": "#cf222e", "MARGINAL": "#9a6700", "SKIPPED": "#6e7781"}
CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1100px;color:#1f2328}
h1{font-size:1.5rem} h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #d0d7de;padding-bottom:.3rem}
table{border-collapse:collapse;width:100%;font-size:.85rem} th,td{border:1px solid #d0d7de;padding:.3rem .5rem;text-align:left}
th{background:#f6f8fa} td.num{text-align:right;font-variant-numeric:tabular-nums}
.badge{display:inline-block;padding:.1rem .5rem;border-radius:1rem;color:#fff;font-weight:600;font-size:.8rem}
.verdict{font-size:1.2rem} .meta{color:#656d76;font-size:.8rem} figure{margin:1rem 0} svg{max-width:100%;height:auto}
.side{display:grid;grid-template-columns:1fr 1fr;gap:1rem}
"""


def _badge(verdict: str, text: str | None = None) -> str:
    return f'<span class="badge" style="background:{COLORS.get(verdict, "#57606a")}">{html.escape(text or verdict)}</span>'


def _svg(fig: Any) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    import matplotlib.pyplot as plt

    plt.close(fig)
    text = buf.getvalue()
    text = text[text.index("<svg"):]
    # drop the RDF metadata block: it only names matplotlib and carries namespace URLs
    start, end = text.find("<metadata>"), text.find("</metadata>")
    if start != -1 and end != -1:
        text = text[:start] + text[end + len("</metadata>"):]
    return text


def _plt() -> Any:
    from edgeship.lazy import require

    mpl = require("matplotlib", "report", "the HTML report")
    mpl.use("Agg")
    mpl.rcParams["svg.hashsalt"] = "edgeship"     # stable element ids: same report, same bytes
    mpl.rcParams["svg.fonttype"] = "none"          # text stays text (small, searchable)
    import matplotlib.pyplot as plt

    return plt


def latency_plot(report: dict[str, Any]) -> str | None:
    rows = [r for r in report["results"] if r.get("status") == "ok" and (r.get("timing") or {}).get("samples_ns")]
    if not rows:
        return None
    plt = _plt()
    import numpy as np

    labels = [f"{r['device']['name']} · {r['artifact']['name']}" for r in rows]
    data = [np.asarray(r["timing"]["samples_ns"], dtype=float) / 1e6 for r in rows]
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(rows) + 1.2))
    ax.boxplot(data, orientation="horizontal", tick_labels=labels, showfliers=False, whis=(1, 99))
    for i, r in enumerate(rows, start=1):
        p90 = float(np.percentile(data[i - 1], 90))
        ax.plot([p90], [i], marker="|", color="#0969da", markersize=14)
        for c in report["checks"]:
            if c["metric"].startswith("latency_") and c["device"] == r["device"]["name"] and c["artifact"] == r["artifact"]["name"]:
                ax.plot([c["limit"]], [i], marker="|", color=COLORS["FAIL"] if not c["passed"] else "#cf222e", markersize=18, mew=2)
    ax.set_xscale("log")
    ax.set_xlabel("latency per inference (ms, log scale) — box: p25..p75, whiskers p1..p99, blue: p90, red: budget")
    ax.grid(axis="x", alpha=0.3)
    return _svg(fig)


def tradeoff_plot(report: dict[str, Any]) -> str | None:
    from edgeship.evidence import eval_entries

    ev = eval_entries(report.get("eval"))
    pts = []
    for r in report["results"]:
        # the entry evaluated on the same device, else the one evaluated on this host
        e = ev.get((r["device"]["name"], r["artifact"]["name"])) or ev.get(("local", r["artifact"]["name"]))
        s = r.get("summary_ms") or {}
        if r.get("status") != "ok" or not e or e.get("status") != "ok" or s.get("p90") is None:
            continue
        pts.append((r["device"]["name"], r["artifact"]["name"], s["p90"], e, r["artifact"]["size_bytes"]))
    if not pts:
        return None
    plt = _plt()
    accs = {round(e["accuracy"], 9) for e in ev.values() if e.get("accuracy") is not None}
    # identical accuracies say nothing about the trade-off: show output fidelity instead
    use_acc = len(accs) > 1
    fig, ax = plt.subplots(figsize=(9, 5))
    biggest = max(p[4] for p in pts)
    pts = [(d, n, x, e["accuracy"] if use_acc else e["cosine_mean"], size) for d, n, x, e, size in pts]
    for dev, name, x, y, size in pts:
        ax.scatter([x], [y], s=60 + 900 * size / biggest, alpha=0.55)
        ax.annotate(f"{name}\n{size / 1024:.0f} KiB" + (f" ({dev})" if len({p[0] for p in pts}) > 1 else ""),
                    (x, y), textcoords="offset points", xytext=(6, 6), fontsize=8)
    ax.set_xlabel("p90 latency (ms)")
    ax.set_ylabel("accuracy" if use_acc else "cosine similarity (mean) vs FP32")
    ax.grid(alpha=0.3)
    ax.set_title("fidelity vs latency (marker area: artifact size) — up and left is better", fontsize=10)
    return _svg(fig)


def memory_plot(report: dict[str, Any]) -> str | None:
    rows = [r for r in report["results"] if r.get("status") == "ok" and (r.get("memory") or {}).get("init_peak_kb")]
    if not rows:
        return None
    plt = _plt()
    import numpy as np

    labels = [f"{r['device']['name']} · {r['artifact']['name']}" for r in rows]
    init = [r["memory"]["init_peak_kb"] / 1024 for r in rows]
    steady = [(r["memory"].get("steady_peak_kb") or 0) / 1024 for r in rows]
    y = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(rows) + 1.2))
    ax.barh(y - 0.2, init, height=0.4, label="peak after init")
    ax.barh(y + 0.2, steady, height=0.4, label="peak in steady state")
    ax.set_yticks(y, labels)
    ax.set_xlabel("resident memory (MB)")
    ax.legend(loc="lower right")
    ax.grid(axis="x", alpha=0.3)
    return _svg(fig)


def _layers_plot(report: dict[str, Any]) -> str | None:
    from edgeship.reports.html_layers import layers_plot  # issue 15: eval.json "layers"

    return layers_plot(report)


def _checks_table(report: dict[str, Any]) -> str:
    rows = []
    for c in report["checks"]:
        v = c["verdict"] if c["verdict"] != "MARGINAL" or c["passed"] else "FAIL"
        value = "" if c["value"] is None else f"{c['value']:.4g}"
        rows.append(
            f"<tr><td>{_badge(v, verdict_label(c).split(' ', 1)[-1])}</td><td>{html.escape(c['device'])}</td>"
            f"<td>{html.escape(c['artifact'])}</td><td>{html.escape(c['metric'])}</td><td class=num>{value}</td>"
            f"<td class=num>{c['limit']:g}</td><td>{html.escape(c['detail'])}</td></tr>"
        )
    return ("<table><tr><th>verdict</th><th>device</th><th>artifact</th><th>metric</th><th>value</th>"
            "<th>budget</th><th>detail</th></tr>" + "".join(rows) + "</table>")


def _results_table(report: dict[str, Any]) -> str:
    rows = []
    for r in report["results"]:
        a = r["artifact"]
        if r.get("status") != "ok":
            rows.append(f"<tr><td>{html.escape(r['device']['name'])}</td><td>{html.escape(a['name'])}</td>"
                        f"<td colspan=6>{_badge('SKIPPED')} {html.escape(str(r.get('skip_reason')))}</td></tr>")
            continue
        s = r["summary_ms"]
        cells = "".join(f"<td class=num>{'' if s.get(k) is None else f'{s[k]:.4f}'}</td>" for k in ("p50", "p90", "p99", "mean"))
        rows.append(f"<tr><td>{html.escape(r['device']['name'])}</td><td>{html.escape(a['name'])}</td>{cells}"
                    f"<td class=num>{s['count']}</td><td class=num>{a['size_bytes'] / 1024:.1f}</td></tr>")
    return ("<table><tr><th>device</th><th>artifact</th><th>p50 ms</th><th>p90 ms</th><th>p99 ms</th><th>mean ms</th>"
            "<th>n</th><th>size KiB</th></tr>" + "".join(rows) + "</table>")


def _section(report: dict[str, Any]) -> str:
    parts = [
        f"<p class=verdict>Gate: {_badge(report['verdict'])} — "
        + ", ".join(f"{n} {html.escape(k)}" for k, n in report["counts"].items() if n) + "</p>",
        "<h2>Verdicts</h2>", _checks_table(report),
        "<h2>Measurements</h2>", _results_table(report),
    ]
    for title, plot in (("Latency distribution", latency_plot(report)), ("Fidelity vs latency", tradeoff_plot(report)),
                        ("Memory: init vs steady state", memory_plot(report)),
                        ("Per-layer INT8 error (worst 20)", _layers_plot(report))):
        if plot:
            parts += [f"<h2>{title}</h2>", f"<figure>{plot}</figure>"]
    return "\n".join(parts)


def render_html(report: dict[str, Any]) -> str:
    body = _section(report)
    base = report.get("compare_to")
    if base:
        body = (f'<div class=side><div><h2>This report ({html.escape(base and report["created"])})</h2>{body}</div>'
                f'<div><h2>Baseline ({html.escape(base["created"])})</h2>{_section(base)}</div></div>')
    env = next((r.get("env") for r in report["results"] if r.get("env")), None) or {}
    meta = html.escape(f"{cpu_label(env.get('cpu', ''))} · {env.get('platform', '')} · edgeship {report['edgeship']} · {report['created']}")
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>edgeship: {html.escape(report['model'])}</title>"
            f"<style>{CSS}</style></head><body><h1>edgeship release gate: {html.escape(report['model'])}</h1>"
            f"{body}<p class=meta>{meta}</p></body></html>\n")
