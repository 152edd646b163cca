"""The shape of a report.json that the renderers rely on, checked before anything renders.

``report --from`` and ``gate --baseline`` read files the user names: a list, a hand-edited check
without ``passed``, samples that are strings. Each is one line naming the file and the first
bad field, never a KeyError from deep inside a renderer. Only what the renderers and the
baseline comparison read is checked; other keys pass through untouched (extra="allow").
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from edgeship.errors import UsageError

Number = float   # strict mode: a JSON int or float, never a string or a bool


class _Loose(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)


class _Check(_Loose):
    device: str
    artifact: str
    metric: str
    verdict: Literal["PASS", "FAIL", "MARGINAL", "SKIPPED"]
    passed: bool
    value: Number | None
    limit: Number
    detail: str
    rerun: str = ""


class _Named(_Loose):
    name: str


class _Artifact(_Named):
    size_bytes: Number


class _Timing(_Loose):
    samples_ns: list[Number] = []


class _Memory(_Loose):
    init_peak_kb: Number | None = None
    steady_peak_kb: Number | None = None


class _Result(_Loose):
    device: _Named
    artifact: _Artifact
    status: str
    skip_reason: str | None = None
    summary_ms: dict[str, Number | None] | None = None
    timing: _Timing | None = None
    memory: _Memory | None = None
    env: dict[str, Any] | None = None


class _Report(_Loose):
    edgeship: str
    model: str
    created: str
    verdict: Literal["PASS", "FAIL"]
    counts: dict[str, int]
    checks: list[_Check]
    results: list[_Result]
    eval: dict[str, Any] | None = None
    warnings: list[str] = []


def validate_report(data: Any, path: Path | str) -> dict[str, Any]:
    """``data`` unchanged if it has the shape of a report.json, else UsageError naming the field."""
    again = "pass a report.json written by 'edgeship gate' (or re-run 'edgeship gate')"
    if not isinstance(data, dict):
        raise UsageError(f"{path}: holds a JSON {type(data).__name__}, not a report object; {again}")
    try:
        report = _Report.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err["loc"]).lstrip(".")
        raise UsageError(f"{path}: not a valid report: '{loc}': {err['msg']}; {again}") from None
    for i, r in enumerate(report.results):
        if r.status == "ok" and r.summary_ms is None:
            raise UsageError(f"{path}: not a valid report: 'results[{i}].summary_ms' missing for an ok result; {again}")
    return data
