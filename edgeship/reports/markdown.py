"""report.md: verdicts and a latency table, ready to post as a pull-request comment."""

from __future__ import annotations

from typing import Any

from edgeship.cpuclass import cpu_label
from edgeship.int8_speed import int8_does_not_pay

ICON = {"PASS": "✅ PASS", "FAIL": "❌ FAIL", "MARGINAL": "⚠️ MARGINAL", "SKIPPED": "⏭️ SKIPPED"}


def verdict_label(c: dict[str, Any]) -> str:
    if c["verdict"] == "MARGINAL":
        return f"{ICON['MARGINAL']} ({'pass' if c['passed'] else 'fail'})"
    return ICON.get(c["verdict"], c["verdict"])


def render_markdown(report: dict[str, Any]) -> str:
    lines = [f"## edgeship gate: {report['model']} — **{report['verdict']}**", ""]
    counts = ", ".join(f"{v} {k}" for k, v in report["counts"].items() if v)
    lines += [f"{len(report['checks'])} checks: {counts}", ""]
    lines += ["| verdict | device | artifact | metric | value | budget | detail |", "|---|---|---|---|---:|---:|---|"]
    for c in report["checks"]:
        value = "" if c["value"] is None else f"{c['value']:.4g}"
        lines.append(f"| {verdict_label(c)} | {c['device']} | {c['artifact']} | {c['metric']} | {value} | {c['limit']:g} | {c['detail']} |")
    rerun = list(dict.fromkeys(c["rerun"] for c in report["checks"] if c.get("rerun")))
    if rerun:
        lines += ["", "Missing or stale evidence; re-run:", ""] + [f"- `{cmd}`" for cmd in rerun]
    lines += [f"\n> warning: {w}" for w in report.get("warnings") or []]
    rows = [r for r in report["results"] if r.get("status") == "ok"]
    if rows:
        lines += ["", "### Latency (ms) and memory", "",
                  "| device | artifact | p50 | p90 | p99 | mean | std | n | peak MB | size KiB |",
                  "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in rows:
            s, m = r["summary_ms"], r.get("memory") or {}
            peaks = [v for v in (m.get("init_peak_kb"), m.get("steady_peak_kb")) if v is not None]
            peak = f"{max(peaks) / 1024:.1f}" if peaks else ""
            cells = " | ".join("" if s[k] is None else f"{s[k]:.4f}" for k in ("p50", "p90", "p99", "mean", "std"))
            lines.append(
                f"| {r['device']['name']} | {r['artifact']['name']} | {cells} | {s['count']} | {peak} | "
                f"{r['artifact']['size_bytes'] / 1024:.1f} |"
            )
    skipped = [r for r in report["results"] if r.get("status") != "ok"]
    for r in skipped:
        lines.append(f"\n- {r['device']['name']}/{r['artifact']['name']}: SKIPPED — {r.get('skip_reason')}")
    slow = int8_does_not_pay(report["results"])
    if slow:
        lines += [""] + [f"- ⚠️ {line}" for line in slow]
    env = next((r.get("env") for r in rows), None)
    if env:
        lines += ["", f"<sub>{cpu_label(env.get('cpu'))} · {env.get('platform')} · python {env.get('python')} · edgeship {report['edgeship']} · {report['created']}</sub>"]
    return "\n".join(lines) + "\n"
