"""gate: budgets x measurements -> verdicts, reports and an exit code.

Latency is decided statistically: a bootstrap CI of the gated statistic; PASS if its upper
bound is within budget, FAIL if its lower bound is over; otherwise measure longer (up to
``gate.max_rounds`` extra rounds, through the injected ``remeasure``) and finally decide on
the point estimate, marked MARGINAL. Memory and size are compared by value. A result whose
runtime could not run on the device is SKIPPED (FAIL when the budget sets ``require``).
Exit code: 0 every check passed, 1 a check failed; usage errors raise (exit 2).
"""

from __future__ import annotations

import datetime as _dt
import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgeship.budgets import ACCURACY, COSINE, MEMORY, SIZE, Check, expand
from edgeship.config import Config
from edgeship.errors import UsageError
from edgeship.stats import MIN_SAMPLES, bootstrap_ci, ns_to_ms, timing_summary
from edgeship.types import Verdict

REPORT_SCHEMA = "edgeship.report/1"
Remeasure = Callable[[str, str], list[int]]


@dataclass(frozen=True)
class CheckResult:
    check: Check
    verdict: Verdict
    passed: bool
    value: float | None = None
    low: float | None = None
    high: float | None = None
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self.check)
        d.update(name=self.check.name, verdict=self.verdict.value, passed=self.passed, value=self.value,
                 low=self.low, high=self.high, detail=self.detail)
        return d


@dataclass(frozen=True)
class GateReport:
    checks: tuple[CheckResult, ...]
    report: dict[str, Any] = field(repr=False)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def exit_code(self) -> int:
        return 0 if self.passed else 1


def decide_latency(
    check: Check, samples_ns: list[int], cfg: Config, remeasure: Remeasure | None,
    rng: np.random.Generator | None = None,
) -> tuple[CheckResult, list[int]]:
    """Sequential decision on one latency check; returns the verdict and all samples used."""
    stat = check.statistic or "p90"
    g = cfg.gate
    rng = rng or np.random.default_rng(0)
    samples = list(samples_ns)
    rounds = 0
    while True:
        enough = len(samples) >= MIN_SAMPLES[stat]
        if enough:
            point, low, high = bootstrap_ci(ns_to_ms(samples), stat, g.confidence, g.bootstrap_resamples, rng)
            ci = f"{stat} {point:.4g} ms, {int(g.confidence * 100)}% CI [{low:.4g}, {high:.4g}] vs budget {check.limit:g} ms"
            if high <= check.limit:
                return CheckResult(check, Verdict.PASS, True, point, low, high, ci), samples
            if low > check.limit:
                return CheckResult(check, Verdict.FAIL, False, point, low, high, ci), samples
        if remeasure is None or rounds >= g.max_rounds:
            break
        rounds += 1
        samples = samples + list(remeasure(check.device, check.artifact))
    point = float(np.percentile(ns_to_ms(samples), {"p50": 50, "p90": 90, "p99": 99}[stat])) if stat != "mean" else float(ns_to_ms(samples).mean())
    if not enough:
        why = f"only {len(samples)} samples, {stat} needs >= {MIN_SAMPLES[stat]}; decided on the point estimate"
        return CheckResult(check, Verdict.MARGINAL, point <= check.limit, point, None, None, why), samples
    why = f"CI straddles the budget after {rounds} extra round(s); decided on the point estimate: {ci}"
    return CheckResult(check, Verdict.MARGINAL, point <= check.limit, point, low, high, why), samples


def _aggregate_latency(check: Check, result: dict[str, Any]) -> CheckResult:
    """Native tools (adb) print aggregates, not samples: decide on the printed value."""
    stat = check.statistic or "p90"
    value = timing_summary(result["timing"]).get(stat)
    if math.isnan(value):  # the tool does not print this statistic
        return CheckResult(check, Verdict.FAIL, False, detail=f"{result['runtime'].get('name')} reports no {stat}; budget mean or p50 instead")
    ok = value <= check.limit
    return CheckResult(check, Verdict.PASS if ok else Verdict.FAIL, ok, value,
                       detail=f"{stat} {value:.4g} ms as printed by {result['runtime'].get('name')} (no raw samples, no CI)")


def _skipped(check: Check, reason: str) -> CheckResult:
    if check.require:
        return CheckResult(check, Verdict.FAIL, False, detail=f"required but SKIPPED: {reason}")
    return CheckResult(check, Verdict.SKIPPED, True, detail=reason)


def _value_check(check: Check, value: float, ok: bool, unit: str) -> CheckResult:
    op = "<=" if check.metric != COSINE else ">="
    return CheckResult(check, Verdict.PASS if ok else Verdict.FAIL, ok, value,
                       detail=f"{value:.6g} {unit} {op} {check.limit:g}" if ok else f"{value:.6g} {unit} violates {op} {check.limit:g}")


def gate(
    cfg: Config, device: str | None = None, remeasure: Remeasure | None = None,
    baseline: dict[str, Any] | None = None, force: bool = False, threshold: float | None = None,
    on_event: Callable[[str], None] | None = None,
) -> GateReport:
    from edgeship.profiling import load_results
    from edgeship.selection import find_artifacts

    say = on_event or (lambda _m: None)
    if not cfg.budgets:
        raise UsageError(f"{cfg.path or 'edgeship.toml'}: no [[budgets]]; add one (see docs/gate.md)")
    artifacts = {r.name: r for r in find_artifacts(cfg)}
    results = load_results(cfg, device)
    by_key = {(r["device"]["name"], r["artifact"]["name"]): r for r in results}
    checks = expand(cfg, results, list(artifacts), device)
    eval_report = _load_eval(cfg) if any(c.metric in (ACCURACY, COSINE) for c in checks) else None
    if remeasure is None:
        remeasure = default_remeasure(cfg)
    out: list[CheckResult] = []
    for c in checks:
        say(f"check {c.name} ...")
        if c.metric.startswith("latency_") or c.metric == MEMORY:
            r = by_key[(c.device, c.artifact)]
            if r["status"] != "ok":
                out.append(_skipped(c, r.get("skip_reason") or "not run"))
            elif c.metric == MEMORY:
                m = r.get("memory") or {}
                peaks = [v for v in (m.get("init_peak_kb"), m.get("steady_peak_kb")) if v is not None]
                if not peaks:
                    out.append(_skipped(c, "the device reported no memory figures"))
                    continue
                mb = max(peaks) / 1024.0
                out.append(_value_check(c, mb, mb <= c.limit + cfg.gate.memory_tolerance_mb, "MB"))
            elif not r["timing"].get("samples_ns"):
                out.append(_aggregate_latency(c, r))
            else:
                res, samples = decide_latency(c, r["timing"]["samples_ns"], cfg, remeasure)
                r["timing"]["samples_ns"] = samples   # the report keeps every sample the verdict used
                out.append(res)
        elif c.metric == SIZE:
            kb = artifacts[c.artifact].manifest.size_bytes / 1024.0
            out.append(_value_check(c, kb, kb <= c.limit, "KiB"))
        else:
            e = (eval_report or {}).get("artifacts", {}).get(c.artifact)
            if e is None:
                raise UsageError(f"no eval result for {c.artifact} in {cfg.build / 'reports' / 'eval.json'}; run 'edgeship eval'")
            if e["status"] != "ok":
                out.append(_skipped(c, e.get("skip_reason") or "not evaluated"))
                continue
            if c.metric == ACCURACY:
                # relative_to = "original": the drop from the original FP32 model, across compression
                key = "accuracy_drop_original" if cfg.budgets[c.budget].relative_to == "original" else "accuracy_drop"
                if key not in e:
                    raise UsageError(f"{c.artifact}: eval.json has no {key}; re-run 'edgeship eval'")
                if e.get(key) is None:
                    raise UsageError(f"budget needs accuracy but the evaluation data has no labels ([data] label_key = {cfg.data.label_key!r})")
                out.append(_value_check(c, e[key], e[key] <= c.limit, "drop"))
            else:
                out.append(_value_check(c, e["cosine_mean"], e["cosine_mean"] >= c.limit, "cosine"))
    if baseline is not None:
        from edgeship.baseline import compare_baseline

        out += compare_baseline(cfg, results, baseline, force, threshold)
    report = build_report(cfg, out, results, eval_report, baseline is not None)
    return GateReport(tuple(out), report)


def default_remeasure(cfg: Config) -> Remeasure:
    """Measure one artifact again on its device (fresh runner process)."""

    def remeasure(device: str, artifact: str) -> list[int]:
        from edgeship.devices.base import open_device
        from edgeship.profiling import profile_artifact
        from edgeship.selection import find_artifacts

        ref = next(r for r in find_artifacts(cfg) if r.name == artifact)
        with open_device(device, cfg) as dev:
            res = profile_artifact(cfg, dev, ref)
        return list((res.get("timing") or {}).get("samples_ns") or [])

    return remeasure


def _load_eval(cfg: Config) -> dict[str, Any]:
    path = cfg.build / "reports" / "eval.json"
    if not path.is_file():
        raise UsageError(f"{path} not found: a budget checks accuracy or cosine; run 'edgeship eval' first")
    return json.loads(path.read_text())


def build_report(cfg: Config, checks: list[CheckResult], results: list[dict[str, Any]],
                 eval_report: dict[str, Any] | None, with_baseline: bool) -> dict[str, Any]:
    from edgeship import __version__

    res_out = []
    for r in results:
        entry = {k: r.get(k) for k in ("device", "artifact", "status", "skip_reason", "runtime", "env", "memory", "settings")}
        if r["status"] == "ok":
            t = r["timing"]
            entry["summary_ms"] = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in asdict(timing_summary(t)).items()}
            entry["timing"] = {"load_ns": t["load_ns"], "first_ns": t["first_ns"], "samples_ns": t["samples_ns"],
                               "aggregate": t.get("aggregate")}
        res_out.append(entry)
    failed = [c for c in checks if not c.passed]
    return {
        "schema": REPORT_SCHEMA,
        "edgeship": __version__,
        "model": cfg.model.name,
        "config_digest": cfg.digest,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "verdict": "FAIL" if failed else "PASS",
        "counts": {v.value: sum(1 for c in checks if c.verdict is v) for v in Verdict},
        "checks": [c.to_dict() for c in checks],
        "results": res_out,
        "eval": eval_report,
        "baseline": with_baseline,
    }


def load_report(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise UsageError(f"{path}: report not found") from None
    except ValueError as exc:
        raise UsageError(f"{path}: not a JSON report ({exc})") from None
    if data.get("schema") != REPORT_SCHEMA:
        raise UsageError(f"{path}: schema {data.get('schema')!r} is not {REPORT_SCHEMA!r}; pass a report.json written by 'edgeship gate'")
    return data
