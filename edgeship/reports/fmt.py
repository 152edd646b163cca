"""Numbers and names as every report shows them, so report.md, report.html and their plots
agree on units: latency in ms, memory in MiB, size in KiB, accuracy in % (drops in points).

The gate computes peak memory as KiB / 1024, i.e. MiB (the budget key is ``peak_memory_mb``):
the reports say MiB because that is what they compute.
"""

from __future__ import annotations

import re
from typing import Any

ANY_DEVICE = "any device"   # a device-independent check (budget device "*")

# metric -> (unit shown after the number, factor from the report's value)
UNITS: dict[str, tuple[str, float]] = {
    "peak_memory_mb": ("MiB", 1.0),
    "size_kb": ("KiB", 1.0),
    "accuracy_drop": ("pt", 100.0),       # a fraction in the report; points of accuracy here
    "cosine_mean": ("", 1.0),
    "speedup_vs_fp32": ("x", 1.0),     # times the speed of the same target's FP32 on the device
}


def device_label(name: str) -> str:
    return ANY_DEVICE if name == "*" else name


def sig(v: float | None, digits: int = 3) -> str:
    """``v`` to ``digits`` significant digits without an exponent (0.0213, 1.25, 1234)."""
    if v is None:
        return ""
    if v == 0:
        return "0"
    text = f"{v:.{digits}g}"
    if "e" in text:
        text = f"{v:.{max(digits - 1 - _exponent(v), 0)}f}"
    return text


def _exponent(v: float) -> int:
    import math

    return math.floor(math.log10(abs(v)))


def metric_unit(metric: str) -> str:
    if metric.startswith("latency_"):
        return "ms"
    return UNITS.get(metric, ("", 1.0))[0]


def metric_value(metric: str, v: float | None) -> str:
    """A check's value or budget with its unit: ``0.0213 ms``, ``31.2 MiB``, ``0.42 pt``."""
    if v is None:
        return ""
    if metric == "cosine_mean":
        return f"{v:.5f}"
    factor = UNITS.get(metric, ("", 1.0))[1]
    unit = metric_unit(metric)
    number = f"{v * factor:.2f}" if metric == "accuracy_drop" else sig(v * factor)
    return f"{number} {unit}".rstrip()


def pct(v: float | None) -> str:
    return "" if v is None else f"{100 * v:.2f}%"


# Only what GFM misreads mid-text: * and ~ (emphasis, strikethrough), < starting a tag (<b, </, <!),
# | (ends a cell), \. Not "_" (never emphasis inside a word: latency_p90_ms), not ">" or "#" (only
# at the start of a line), not "[1.4, 1.6]" (a link only when followed by a URL), not "< 90%":
# the raw text stays readable.
_MD_SPECIAL = re.compile(r"([\\*|~]|<(?=[A-Za-z/!?]))")


def md_text(text: Any) -> str:
    """Text safe in a GFM table cell or list item: ≤/≥ for <=/>=, markdown characters escaped;
    `code spans` are kept as they are (they show commands to run)."""
    parts = str(text).replace("\n", " ").split("`")
    tail = parts.pop() if len(parts) % 2 == 0 else None   # after an unmatched backtick: plain text

    def plain(p: str) -> str:
        return _MD_SPECIAL.sub(r"\\\1", p.replace("<=", "≤").replace(">=", "≥"))

    # even parts are outside code spans; in a code span only a pipe is escaped (it ends a table cell)
    out = [plain(p) if i % 2 == 0 else p.replace("|", "\\|") for i, p in enumerate(parts)]
    return "`".join(out) + ("" if tail is None else "\\`" + plain(tail))


# evidence kinds a verdict names (edgeship.types.Evidence.labelled): numbers that did not come
# from running the artifact on its hardware; "simulated" and "emulated" follow PASS/FAIL everywhere
LABELLED_EVIDENCE = ("emulated", "simulated")


def evidence_suffix(c: dict[str, Any]) -> str:
    """`` (simulated)`` for a check judged on simulated evidence (emulated alike), else empty."""
    kind = c.get("evidence")
    return f" ({kind})" if kind in LABELLED_EVIDENCE else ""


def labelled_passes(report: dict[str, Any]) -> dict[str, list[str]]:
    """Passed checks judged on emulated or simulated evidence: kind -> ['device/artifact metric']."""
    out: dict[str, list[str]] = {}
    for c in report["checks"]:
        if c["passed"] and c.get("evidence") in LABELLED_EVIDENCE:
            out.setdefault(c["evidence"], []).append(f"{c['device']}/{c['artifact']} {c['metric']}")
    return out


def effective_verdict(c: dict[str, Any]) -> str:
    """PASS / FAIL / SKIPPED / MARGINAL (a MARGINAL that fails counts as FAIL for colour)."""
    return "FAIL" if c["verdict"] == "MARGINAL" and not c["passed"] else c["verdict"]


def fails(c: dict[str, Any]) -> bool:
    """Whether a check fails the gate, from its verdict: FAIL, or a MARGINAL decided over budget
    (only a MARGINAL's ``passed`` carries information the verdict does not)."""
    return c["verdict"] == "FAIL" or (c["verdict"] == "MARGINAL" and not c["passed"])


def failing(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for c in report["checks"] if fails(c)]


def failures_first(checks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    order = {"FAIL": 0, "MARGINAL": 1, "PASS": 2, "SKIPPED": 3}
    return sorted(checks, key=lambda c: (c["passed"], order.get(c["verdict"], 4)))
