"""report.md: a pull-request comment. The verdict and each failing check (with the command
that refreshes its evidence) come first; everything else is folded in ``<details>``.

Every cell goes through ``fmt.md_text`` (no stray ``*`` or ``<=`` for GFM to misread). The
folded part is a list of section functions (``DETAILS``): a new section is one more entry.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from edgeship.exporting.cpuclass import cpu_label
from edgeship.gating.int8_speed import int8_does_not_pay
from edgeship.reports.fmt import (
    device_label,
    evidence_suffix,
    failing,
    failures_first,
    labelled_passes,
    md_text,
    metric_value,
    sig,
)

ICON = {"PASS": "✅ PASS", "FAIL": "❌ FAIL", "MARGINAL": "⚠️ MARGINAL", "SKIPPED": "⏭️ SKIPPED"}


def verdict_label(c: dict[str, Any]) -> str:
    if c["verdict"] == "MARGINAL":
        return f"{ICON['MARGINAL']} ({'pass' if c['passed'] else 'fail'})" + evidence_suffix(c)
    return ICON.get(c["verdict"], c["verdict"]) + evidence_suffix(c)


def check_title(c: dict[str, Any]) -> str:
    """``local · onnx-int8 · latency_p90_ms``: names one check the way every report does."""
    return f"{device_label(c['device'])} · {c['artifact']} · {c['metric']}"


def _table(head: list[str], align: str, rows: list[list[str]]) -> list[str]:
    """A GFM table; ``align`` has one letter per column: l(eft) or r(ight)."""
    sep = ["---:" if a == "r" else ":---" for a in align]
    return ["| " + " | ".join(head) + " |", "|" + "|".join(sep) + "|"] + ["| " + " | ".join(r) + " |" for r in rows]


def _folded(summary: str, body: list[str]) -> list[str]:
    # blank lines around the body: GFM renders markdown inside <details> only after one
    return ["", f"<details><summary>{summary}</summary>", ""] + body + ["", "</details>"]


def _head(report: dict[str, Any]) -> list[str]:
    checks = report["checks"]
    counts = ", ".join(f"{v} {k}" for k, v in report["counts"].items() if v)
    bad = failing(report)
    verdict = ICON.get(report["verdict"], report["verdict"])
    summary = f"{len(bad)} of {len(checks)} checks failed ({counts})" if bad else f"{len(checks)} checks: {counts}"
    lines = [f"## edgeship gate: {md_text(report['model'])} — {verdict}", "", summary]
    if bad:
        lines += ["", "### Failing checks", ""]
        for c in bad:
            value = metric_value(c["metric"], c["value"])
            got = f"{value}, budget {metric_value(c['metric'], c['limit'])}" if value else f"budget {metric_value(c['metric'], c['limit'])}"
            rerun = c.get("rerun")
            detail = c["detail"].replace(f"; run `{rerun}`", "") if rerun else c["detail"]
            lines.append(f"- {verdict_label(c)} {md_text(check_title(c))}: {md_text(got)}. {md_text(detail)}")
            if rerun:   # on its own line, whole, ready to copy
                lines.append(f"  - re-run: `{rerun}`")
    # passing rows are folded below: a pass on simulated or emulated evidence is named up here
    for kind, names in labelled_passes(report).items():
        lines += ["", f"Passed on {kind} evidence: {md_text(', '.join(names))}"]
    lines += [""] + [f"> warning: {md_text(w)}" for w in report.get("warnings") or []]
    return lines


def _all_checks(report: dict[str, Any]) -> list[str]:
    rows = [[verdict_label(c), md_text(device_label(c["device"])), md_text(c["artifact"]), md_text(c["metric"]),
             metric_value(c["metric"], c["value"]), metric_value(c["metric"], c["limit"]), md_text(c["detail"])]
            for c in failures_first(report["checks"])]
    if not rows:
        return []
    head = ["verdict", "device", "artifact", "metric", "value", "budget", "detail"]
    return _folded(f"All {len(rows)} checks", _table(head, "llllrrl", rows))


def _measurements(report: dict[str, Any]) -> list[str]:
    ok = [r for r in report["results"] if r.get("status") == "ok"]
    rows = []
    for r in ok:
        s, m = r["summary_ms"], r.get("memory") or {}
        peaks = [v for v in (m.get("init_peak_kb"), m.get("steady_peak_kb")) if v is not None]
        peak = f"{max(peaks) / 1024:.1f}" if peaks else "n/a"
        cells = [sig(s.get(k)) or "n/a" for k in ("p50", "p90", "p99", "mean", "std")]
        rows.append([md_text(r["device"]["name"]), md_text(r["artifact"]["name"]), *cells, str(s["count"]), peak,
                     f"{r['artifact']['size_bytes'] / 1024:.1f}"])
    body = []
    if rows:
        head = ["device", "artifact", "p50 ms", "p90 ms", "p99 ms", "mean ms", "std ms", "runs", "peak MiB", "size KiB"]
        body += _table(head, "llrrrrrrrr", rows)
    skipped = [r for r in report["results"] if r.get("status") != "ok"]
    if skipped:
        body += [""] + [f"- {md_text(r['device']['name'])}/{md_text(r['artifact']['name'])}: SKIPPED — "
                        f"{md_text(r.get('skip_reason'))}" for r in skipped]
    if not body:
        return []
    return _folded(f"Latency and memory ({len(ok)} measured, {len(skipped)} skipped)", body)


def _notes(report: dict[str, Any]) -> list[str]:
    slow = int8_does_not_pay(report["results"])
    return _folded(f"Notes ({len(slow)})", [f"- ⚠️ {md_text(line)}" for line in slow]) if slow else []


DETAILS: list[Callable[[dict[str, Any]], list[str]]] = [_all_checks, _measurements, _notes]


def render_markdown(report: dict[str, Any]) -> str:
    lines = _head(report)
    for section in DETAILS:
        lines += section(report)
    env = next((r.get("env") for r in report["results"] if r.get("status") == "ok" and r.get("env")), None)
    if env:
        meta = (f"{cpu_label(env.get('cpu'))} · {env.get('platform')} · python {env.get('python')} · "
                f"edgeship {report['edgeship']} · {report['created']}")
        lines += ["", f"<sub>{md_text(meta)}</sub>"]
    return "\n".join(lines) + "\n"
