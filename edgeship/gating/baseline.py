"""Regression check against a saved report.json: rounds compared with rounds.

The samples of one runner process are not independent, so a test over them (Mann-Whitney on
raw samples) reads ordinary run-to-run noise as a regression. The unit is the round (a fresh
runner process, see edgeship.measure.rounds): each round's median is one observation. A regression
needs a one-sided permutation test over the log round medians, with the new ones divided by
(1 + gate.regression_threshold), to reject at gate.regression_alpha: the slowdown exceeds the
threshold (5% by default) BEYOND the round-to-round noise. Its effect size, the ratio of the
median round medians, is the check's value. With too few rounds for the test to ever reach
alpha (1 round: a report from before rounds; 2+2 or 3+3 rounds at alpha 0.01), the verdict is
MARGINAL, decided on the effect size alone, and says why. Results from different hardware are
refused unless ``force``: a baseline from another CPU says nothing about this change.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from edgeship.config import Config
from edgeship.errors import UsageError
from edgeship.gating.budgets import Check
from edgeship.gating.checks import CheckResult
from edgeship.measure.rounds import timing_rounds
from edgeship.measure.stats import permutation_pvalue
from edgeship.types import Verdict

HARDWARE_KEYS = ("cpu", "machine", "cpu_count")


def _fingerprint(r: dict[str, Any]) -> tuple[Any, ...]:
    env = r.get("env") or {}
    rt = r.get("runtime") or {}
    # env["cpu"] is {"model", "cpu_class", ...} since CPU classes; older results hold the model string
    hw = tuple(v.get("model") if isinstance(v, dict) else v for v in (env.get(k) for k in HARDWARE_KEYS))
    return hw + (rt.get("name"), rt.get("version"), rt.get("threads"))


def _round_medians(r: dict[str, Any]) -> np.ndarray:
    return np.array([np.median(np.asarray(s, dtype=np.float64)) for s in timing_rounds(r["timing"])]) / 1e6


def compare_baseline(cfg: Config, results: list[dict[str, Any]], baseline: dict[str, Any],
                     force: bool = False, threshold: float | None = None) -> list[CheckResult]:
    from edgeship.devices.boards import EMULATED_TIMING, timing_counts

    thr = cfg.gate.regression_threshold if threshold is None else threshold
    alpha = cfg.gate.regression_alpha
    old = {(r["device"]["name"], r["artifact"]["name"]): r for r in baseline.get("results", [])
           if r.get("status") == "ok" and (r.get("timing") or {}).get("samples_ns")}
    out = []
    for r in results:
        key = (r["device"]["name"], r["artifact"]["name"])
        if r.get("status") != "ok" or key not in old or not r["timing"].get("samples_ns"):
            continue
        if not timing_counts(r):   # an emulated board's latency is recorded, never compared
            out.append(CheckResult(Check(-1, key[0], key[1], "latency_regression", thr), Verdict.SKIPPED, True,
                                   detail=EMULATED_TIMING))
            continue
        b = old[key]
        if _fingerprint(b) != _fingerprint(r) and not force:
            raise UsageError(
                f"baseline for {key[0]}/{key[1]} was measured on different hardware or runtime "
                f"({_fingerprint(b)} vs {_fingerprint(r)}); compare like with like, or pass --force"
            )
        new_med, old_med = _round_medians(r), _round_medians(b)
        ratio = float(np.median(new_med) / np.median(old_med))
        check = Check(-1, key[0], key[1], "latency_regression", thr)
        rule = f"regression: > +{100 * thr:.0f}% beyond round noise at p < {alpha:g}"
        rounds = f"{new_med.size} vs {old_med.size} rounds"
        if new_med.size < 2 or old_med.size < 2:
            slower = ratio >= 1.0 + thr
            detail = (f"median {ratio:.3f}x baseline ({rounds}: 1 round gives no run-to-run noise; decided on "
                      "the effect size alone; re-measure with [profile] rounds >= 3)")
            out.append(CheckResult(check, Verdict.MARGINAL, not slower, ratio, detail=detail))
            continue
        p, floor = permutation_pvalue(np.log(new_med), np.log(old_med), math.log1p(thr))
        if floor >= alpha:
            slower = ratio >= 1.0 + thr
            detail = (f"median {ratio:.3f}x baseline ({rounds}: too few for p < {alpha:g}, smallest possible "
                      f"p={floor:.2g}; decided on the effect size alone; raise [profile] rounds)")
            out.append(CheckResult(check, Verdict.MARGINAL, not slower, ratio, detail=detail))
            continue
        regressed = p < alpha and ratio >= 1.0 + thr
        detail = f"median {ratio:.3f}x baseline over {rounds}, permutation p={p:.2g} ({rule})"
        out.append(CheckResult(check, Verdict.FAIL if regressed else Verdict.PASS, not regressed, ratio, detail=detail))
    return out
