"""The shape of a report.json that the renderers rely on, checked before anything renders.

``report --from`` and ``gate --baseline`` read files the user names: a list, a hand-edited check
without ``passed``, samples that are strings. Each is one line naming the file and the first
bad field, never a KeyError from deep inside a renderer. Only what the renderers and the
baseline comparison read is checked; other keys pass through untouched (extra="allow").
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from edgeship.errors import UsageError

Number = float   # strict mode: a JSON int or float, never a string or a bool
# sizes and durations: >= 0, and small enough that sums and ratios of them stay finite
Amount = Annotated[float, Field(ge=0, le=1e18)]


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
    size_bytes: Amount
    model: str | None = None
    target: str | None = None
    precision: str | None = None


class _Round(_Loose):
    samples_ns: list[Amount] | None = None


class _Timing(_Loose):
    samples_ns: list[Amount] = []
    rounds: list[_Round] | None = None


class _Summary(_Loose):
    count: int
    p90: Number | None   # the renderers index these two; the others are read with .get


class _Runtime(_Loose):
    name: str | None = None
    version: str | None = None
    threads: int | None = None


class _Memory(_Loose):
    init_peak_kb: Number | None = None
    steady_peak_kb: Number | None = None


class _Result(_Loose):
    device: _Named
    artifact: _Artifact
    status: str
    skip_reason: str | None = None
    summary_ms: _Summary | None = None
    timing: _Timing | None = None
    memory: _Memory | None = None
    env: dict[str, Any] | None = None
    runtime: _Runtime | None = None


class _EvalEntry(_Loose):
    device: str | None = None
    artifact: str | None = None
    status: str | None = None
    created: str | None = None
    accuracy: Number | None = None
    accuracy_drop: Number | None = None
    cosine_mean: Number | None = None
    cosine_min: Number | None = None


class _LayerRow(_Loose):
    layer: str
    op_type: str
    module: str | None = None
    sqnr_db: Number | None = None
    gain_if_float: Number | None = None


class _Layers(_Loose):
    layers: list[_LayerRow] = []
    kept_float: list[str] | None = None
    cpu_class: str | None = None


class _Eval(_Loose):
    """eval.json as embedded in the report: the entries and layers the plots and tables read."""
    schema_: str | None = Field(None, alias="schema")
    entries: dict[str, _EvalEntry] | None = None
    artifacts: dict[str, _EvalEntry] | None = None
    layers: dict[str, _Layers] | None = None


class _Report(_Loose):
    edgeship: str
    model: str
    created: str
    verdict: Literal["PASS", "FAIL"]
    counts: dict[str, int]
    checks: list[_Check]
    results: list[_Result]
    eval: _Eval | None = None
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
    _consistent(report, path, again)
    return data


# ``passed`` is what the gate decided for a check; it may differ from the verdict only for a
# MARGINAL check (decided on its point estimate). A PASS or SKIPPED that did not pass, or a FAIL
# that did, means the file was edited or is corrupt: rendering it would show a verdict the gate
# never gave (a FAIL row under a passing junit.xml), and "recomputing" would guess which of the
# two fields is the lie. So such a file is refused, like any other malformed report.
_PASSED = {"PASS": True, "SKIPPED": True, "FAIL": False}


def _consistent(report: _Report, path: Path | str, again: str) -> None:
    for i, c in enumerate(report.checks):
        want = _PASSED.get(c.verdict)
        if want is not None and c.passed != want:
            raise UsageError(f"{path}: not a valid report: 'checks[{i}]' ({c.device}/{c.artifact} {c.metric}) has "
                             f"verdict {c.verdict} but passed {str(c.passed).lower()}: the file contradicts itself "
                             f"(edited or corrupt); {again}")
    overall = "FAIL" if any(not c.passed for c in report.checks) else "PASS"
    if report.verdict != overall:
        raise UsageError(f"{path}: not a valid report: 'verdict' is {report.verdict} but its checks say {overall}: "
                         f"the file contradicts itself (edited or corrupt); {again}")
