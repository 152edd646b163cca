"""The terminal verdict table (plain text, safe to pipe)."""

from __future__ import annotations

from typing import Any

from edgeship.int8_speed import int8_does_not_pay
from edgeship.table import render


def render_terminal(report: dict[str, Any]) -> str:
    rows = []
    for c in report["checks"]:
        verdict = c["verdict"] if c["verdict"] != "MARGINAL" else f"MARGINAL({'pass' if c['passed'] else 'fail'})"
        value = "" if c["value"] is None else f"{c['value']:.4g}"
        rows.append([verdict, c["device"], c["artifact"], c["metric"], value, f"{c['limit']:g}", c["detail"][:90]])
    head = ["verdict", "device", "artifact", "metric", "value", "budget", "detail"]
    counts = ", ".join(f"{v} {k}" for k, v in report["counts"].items() if v)
    tail = [f"warning: {w}" for w in report.get("warnings") or []]
    rerun = list(dict.fromkeys(c["rerun"] for c in report["checks"] if c.get("rerun")))
    if rerun:   # the table cuts details short; the commands that refresh evidence are shown whole
        tail += ["missing or stale evidence; re-run:"] + [f"  {cmd}" for cmd in rerun]
    tail += [f"note: {line}" for line in int8_does_not_pay(report["results"])]
    notes = "\n\n" + "\n".join(tail) if tail else ""
    return render(head, rows) + notes + f"\n\ngate: {report['verdict']} ({counts})"
