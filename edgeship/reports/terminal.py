"""The terminal verdict: failures first, a count of what passed, a closing line naming each failure.

``render_terminal`` is what goes to stdout (the table, the commands that refresh missing
evidence, the closing ``gate: VERDICT (...)`` line); ``terminal_notes`` are the warning and
note lines, which the commands print on stderr so they never mix into the table.
"""

from __future__ import annotations

import textwrap
from typing import Any

from edgeship.gating.int8_speed import int8_does_not_pay
from edgeship.reports.fmt import evidence_suffix, labelled_passes
from edgeship.ui.table import PLAIN_WIDTH

# the order rows are shown in: what needs attention first
_RANK = {"FAIL": 0, "MARGINAL(fail)": 1, "MARGINAL(pass)": 2, "SKIPPED": 3, "PASS": 4}


def _verdict(c: dict[str, Any]) -> str:
    return c["verdict"] if c["verdict"] != "MARGINAL" else f"MARGINAL({'pass' if c['passed'] else 'fail'})"


def _verdict_label(c: dict[str, Any]) -> str:
    """The verdict as shown: ``PASS (simulated)`` when judged on simulated (or emulated) evidence."""
    return _verdict(c) + evidence_suffix(c)


def gate_table(report: dict[str, Any], all_rows: bool = False) -> tuple[Any, int]:
    """The checks as a Table, failures first; without ``all_rows`` only FAIL and MARGINAL rows
    (and the number of rows left out)."""
    from edgeship.ui.table import Column, Table

    table = Table([
        Column("verdict", "verdict"), Column("device", "device", priority=2), Column("artifact", "artifact"),
        Column("metric", "metric"), Column("value", "value", "number", digits=4),
        Column("budget", "budget", "number", fmt="{:g}"), Column("detail", "detail", wrap=True, priority=1),
    ])
    checks = sorted(report["checks"], key=lambda c: _RANK.get(_verdict(c), 5))   # stable: same-rank order kept
    hidden = 0
    for c in checks:
        verdict = _verdict(c)
        if not all_rows and not verdict.startswith(("FAIL", "MARGINAL")):
            hidden += 1
            continue
        table.add_row(style="bold red" if not c["passed"] else ("yellow" if verdict.startswith("MARGINAL") else None),
                      verdict=_verdict_label(c), device=c["device"], artifact=c["artifact"], metric=c["metric"],
                      value=c["value"], budget=c["limit"], detail=_detail(c))
    return table, hidden


def _detail(c: dict[str, Any]) -> str:
    """The detail without its trailing ``; run `CMD``` when the command is listed under the table."""
    detail = str(c["detail"])
    tail = f"; run `{c.get('rerun')}`"
    return detail[: -len(tail)] if c.get("rerun") and detail.endswith(tail) else detail


def failing(report: dict[str, Any]) -> list[str]:
    """'device/artifact metric' of every check that did not pass."""
    return [f"{c['device']}/{c['artifact']} {c['metric']}" for c in report["checks"] if not c["passed"]]


def summary_line(report: dict[str, Any]) -> str:
    """``gate: VERDICT (counts)``, then every failing check, grouped by device/artifact."""
    counts = ", ".join(f"{v} {k}" for k, v in report["counts"].items() if v)
    grouped: dict[str, list[str]] = {}
    for c in report["checks"]:
        if not c["passed"]:
            grouped.setdefault(f"{c['device']}/{c['artifact']}", []).append(c["metric"])
    names = "; ".join(f"{k}: {', '.join(v)}" for k, v in grouped.items())
    # passing rows are not shown by default: a pass on evidence that is not a measurement of the
    # artifact on its hardware is named here, so it is never read as one
    labelled = "".join(f"; passed on {kind} evidence: {', '.join(v)}" for kind, v in labelled_passes(report).items())
    return f"gate: {report['verdict']} ({counts})" + (f"; failing: {names}" if names else "") + labelled


def render_terminal(report: dict[str, Any], width: int | None = None, wide: bool = False,
                    all_rows: bool = False, color: bool = False) -> str:
    table, hidden = gate_table(report, all_rows)
    parts = []
    if table.rows:
        parts.append(table.render(width, wide=wide, color=color))
    if hidden:
        kinds = ", ".join(f"{report['counts'][k]} {k}" for k in ("PASS", "SKIPPED") if report["counts"].get(k))
        parts.append(f"({kinds} not shown; --all shows every row)" if kinds else
                     f"({hidden} rows not shown; --all shows every row)")
    rerun = list(dict.fromkeys(c["rerun"] for c in report["checks"] if c.get("rerun")))
    if rerun:   # the table wraps details; the commands that refresh evidence are shown whole
        parts.append("\n".join(["missing or stale evidence; re-run:"] + [f"  {cmd}" for cmd in rerun]))
    line = summary_line(report)
    if not wide and len(line) > (width or PLAIN_WIDTH):   # one summary, wrapped at the width (never cut)
        line = "\n".join(textwrap.wrap(line, width or PLAIN_WIDTH, subsequent_indent="  ", break_on_hyphens=False))
    parts.append(line)
    return "\n\n".join(parts)


def terminal_notes(report: dict[str, Any]) -> list[str]:
    """Warning and note lines (for stderr)."""
    return ([f"warning: {w}" for w in report.get("warnings") or []]
            + [f"note: {line}" for line in int8_does_not_pay(report["results"])])
