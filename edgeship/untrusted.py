"""JSON that edgeship reads back (history, reports, baselines, manifests) is untrusted input.

Python's ``json`` accepts more than JSON: ``NaN`` and ``Infinity`` literals, numbers like
``1e400`` that become ``inf``, integers of thousands of digits, and nesting until the
interpreter's recursion limit (a RecursionError, not a ValueError). Any of those inside a
file the user (or an attacker) edited would travel into statistics and out into report.json,
which strict JSON parsers then reject, or surface as an internal error. ``loads`` refuses them
with a short reason (a ValueError) that the caller words into one line naming the file;
``dumps`` writes strict JSON only, a non-finite float becoming null (no number).
"""

from __future__ import annotations

import json
import math
from typing import Any

# Deeper than any file edgeship writes (a report is ~6 levels): deeper is not ours.
MAX_DEPTH = 64
# Larger than any count or nanosecond timestamp edgeship writes; larger ints overflow floats.
MAX_INT = 2**63


class UntrustedJSONError(ValueError):
    """The text is not strict, bounded JSON; the message says why in a few words."""


def _constant(name: str) -> Any:
    raise UntrustedJSONError(f"holds {name}, which is not a JSON number")


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise UntrustedJSONError(f"holds the number {text[:40]}, out of range")
    return value


def _int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:   # more digits than int() converts (sys.get_int_max_str_digits)
        raise UntrustedJSONError(f"holds a {len(text)}-digit number, out of range") from None
    if abs(value) >= MAX_INT:
        raise UntrustedJSONError(f"holds the number {text[:40]}, out of range")
    return value


def loads(data: str | bytes) -> Any:
    """Parse strict JSON (UTF-8 when bytes); UntrustedJSONError saying what is wrong."""
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise UntrustedJSONError(f"not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})") from None
    try:
        value = json.loads(data, parse_constant=_constant, parse_float=_float, parse_int=_int)
    except RecursionError:
        raise UntrustedJSONError(f"nested more than {MAX_DEPTH} levels deep") from None
    except json.JSONDecodeError as exc:
        raise UntrustedJSONError(f"not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    _check_depth(value)
    return value


def _check_depth(value: Any) -> None:
    stack = [(value, 1)]
    while stack:
        v, depth = stack.pop()
        if isinstance(v, (dict, list)):
            if depth > MAX_DEPTH:
                raise UntrustedJSONError(f"nested more than {MAX_DEPTH} levels deep")
            stack.extend((x, depth + 1) for x in (v.values() if isinstance(v, dict) else v))


def finite(value: Any) -> Any:
    """``value`` with every non-finite float replaced by None (JSON null: no number)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def dumps(value: Any, **kwargs: Any) -> str:
    """Strict JSON (never NaN or Infinity): what any JSON parser reads back."""
    return json.dumps(finite(value), allow_nan=False, **kwargs)
