"""``min_speedup_vs_fp32``: does INT8 pay on this device? Judged from paired rounds.

The most-raised complaint about INT8 across the LiteRT, XNNPACK, PyTorch and TFLite trackers is
an INT8 model that runs slower than float on the user's CPU (x86 without VNNI, some arm64
cores). A budget ``min_speedup_vs_fp32 = 1.2`` makes that a verdict per device instead of a
note (gate/int8_speed.py). The two numbers must come from the same minutes: ``profile``
interleaves the rounds of the artifacts it measures (round i of every artifact in one pass,
``result["session"]`` names the call), so round i of FP32 and round i of INT8 ran back to back
and the machine's drift, slower than a pair of rounds, is common to both. Each pair gives one
speed-up (FP32 median / INT8 median of that round); the verdict is a Student-t interval over
the pairs' log speed-ups: PASS when its lower end is at least the budget, FAIL when its upper
end is below, otherwise more pairs (FP32 and INT8 back to back, their order alternating) up
to ``gate.max_rounds``, then MARGINAL on the point. Each look uses confidence 1 - (1 - c) / L
(Bonferroni over the L possible looks), as the latency verdicts do.

FP32 and INT8 profiled by different ``profile`` calls are not compared (a FAIL naming the one
command that measures both together); an emulated board's timing never counts (SKIPPED).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from edgeship.config import Config
from edgeship.devices.boards import EMULATED_TIMING, timing_counts
from edgeship.gating.budgets import Check
from edgeship.gating.checks import CheckResult
from edgeship.gating.evidence import check_evidence, judged_artifact, profile_command
from edgeship.measure.stats import paired_interval
from edgeship.types import Verdict

Remeasure = Callable[[str, str], list[int]]


def fp32_artifact(cfg: Config, check: Check) -> str:
    """The FP32 build an INT8 artifact is compared with on the check's device."""
    return judged_artifact(cfg, check.device, check.target, "fp32")


def session_rounds(result: dict[str, Any]) -> list[float]:
    """Per round of the profile session, its median in ms: of its samples, or the median a native
    tool printed (adb); rounds the gate re-measured later for a latency check are not part of
    the session's interleaving and are left out."""
    out = []
    for e in (result.get("timing") or {}).get("rounds") or []:
        if e.get("remeasured"):
            continue
        if e.get("samples_ns"):
            out.append(float(np.median(np.asarray(e["samples_ns"], dtype=np.float64))) / 1e6)
            continue
        agg = e.get("aggregate") or {}
        v = agg.get("p50") if isinstance(agg.get("p50"), (int, float)) else agg.get("mean")
        if isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0:
            out.append(float(v) / 1e6)
    if not out and (result.get("timing") or {}).get("samples_ns"):   # a result from before rounds
        out.append(float(np.median(np.asarray(result["timing"]["samples_ns"], dtype=np.float64))) / 1e6)
    return out


def judge_speedup(check: Check, int8: dict[str, Any] | None, fp32: dict[str, Any] | None, digests: dict[str, str],
                  cfg: Config, remeasure: Remeasure | None) -> tuple[CheckResult, bool]:
    """The verdict of one ``min_speedup_vs_fp32`` check, and whether its evidence came from
    another edgeship.toml (a warning, as for every check)."""
    fp_name = fp32_artifact(cfg, check)
    command = profile_command(check.device, check.target, f"fp32,{check.precision}")
    changed = False
    for name, r in ((check.artifact, int8), (fp_name, fp32)):
        what = f"profile result for {name} on {check.device}"
        if name not in digests:
            return _fail(check, f"no artifact {name} under {cfg.artifacts_dir}: {check.metric} compares "
                         f"{check.artifact} with it", f"edgeship export --target {check.target} --precision fp32"), False
        if r is None:
            return _fail(check, f"no {what}", command), False
        st = check_evidence(r["artifact"].get("artifact_digest"), r.get("config_digest"), digests[name], cfg, what)
        if st.stale:
            return _fail(check, st.reason, command), False
        changed = changed or st.config_changed
    assert int8 is not None and fp32 is not None
    for r in (int8, fp32):
        if r["status"] != "ok":
            return _skipped(check, f"{r['artifact']['name']}: {r.get('skip_reason') or 'not run'}"), changed
        if not timing_counts(r):
            return _skipped(check, EMULATED_TIMING), changed
    if not int8.get("session") or int8.get("session") != fp32.get("session"):
        return _fail(check, f"{check.artifact} and {fp_name} on {check.device} were not profiled in the same session; "
                     "their rounds must be interleaved to cancel the machine's drift", command), changed
    fp, q = session_rounds(fp32), session_rounds(int8)
    n = min(len(fp), len(q))
    return decide_speedup(check, fp[:n], q[:n], fp_name, cfg, remeasure), changed


def decide_speedup(check: Check, fp32_ms: list[float], int8_ms: list[float], fp_name: str, cfg: Config,
                   remeasure: Remeasure | None) -> CheckResult:
    """Sequential decision over paired rounds (``fp32_ms[i]`` and ``int8_ms[i]`` ran back to back)."""
    g = cfg.gate
    looks = 1 + (g.max_rounds if remeasure is not None else 0)
    conf = 1.0 - (1.0 - g.confidence) / looks
    fp, q = list(fp32_ms), list(int8_ms)
    extra = 0
    while True:
        logs = [math.log(f / i) for f, i in zip(fp, q) if f > 0 and i > 0]
        if logs:
            point, low, high = paired_interval(logs, conf)
            pairs = np.exp(logs)
            what = (f"{check.artifact} {point:.3g}x the speed of {fp_name} (median per round; "
                    + (f"{100 * conf:.3g}% CI [{low:.3g}, {high:.3g}] over {len(logs)} interleaved round pairs, "
                       f"pair speed-ups {pairs.min():.3g}..{pairs.max():.3g})" if len(logs) >= 2 else "1 round pair, no CI)")
                    + f" vs min {check.limit:g}x")
            if len(logs) >= 2 and low >= check.limit:
                return _result(check, Verdict.PASS, True, point, low, high, what, len(logs))
            if len(logs) >= 2 and high < check.limit:
                return _result(check, Verdict.FAIL, False, point, low, high,
                               f"{what}: INT8 does not pay this much on '{check.device}'", len(logs))
        if remeasure is None or extra >= g.max_rounds:
            break
        order = [(fp_name, fp), (check.artifact, q)]
        if extra % 2:     # alternate which runs first, so an order effect cancels too
            order.reverse()
        got = [(into, remeasure(check.device, name)) for name, into in order]
        if any(not samples for _, samples in got):
            break         # nothing more to measure (gate --no-remeasure, a native tool)
        for into, samples in got:
            into.append(float(np.median(np.asarray(samples, dtype=np.float64))) / 1e6)
        extra += 1
    if not logs:
        return _fail(check, f"no round of {check.artifact} and {fp_name} to compare on '{check.device}'",
                     profile_command(check.device, check.target, f"fp32,{check.precision}"))
    point, low, high = paired_interval(logs, conf)
    why = (f"the interval straddles the budget after {extra} extra round pair(s); decided on the point estimate: "
           f"{what}")
    return _result(check, Verdict.MARGINAL, point >= check.limit, point, None if math.isnan(low) else low,
                   None if math.isnan(high) else high, why, len(logs))


def _result(check: Check, verdict: Verdict, passed: bool, point: float, low: float | None, high: float | None,
            detail: str, pairs: int) -> CheckResult:
    # no ``rounds`` block: that one describes a latency statistic's rounds (flag_noisy_devices reads it)
    return CheckResult(check, verdict, passed, point, low, high, detail)


def _fail(check: Check, why: str, command: str) -> CheckResult:
    return CheckResult(check, Verdict.FAIL, False, detail=f"{why}; run `{command}`", rerun=command)


def _skipped(check: Check, reason: str) -> CheckResult:
    if check.require:
        return CheckResult(check, Verdict.FAIL, False, detail=f"required but SKIPPED: {reason}")
    return CheckResult(check, Verdict.SKIPPED, True, detail=reason)
