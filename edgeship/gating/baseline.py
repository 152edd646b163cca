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

The stronger mode (``compare_interleaved``) measures the baseline's artifacts and the
candidate's now, in interleaved pairs of rounds (edgeship.measure.interleave), so the
machine's drift cancels, and answers slower / not slower / unknown with a stated
false-alarm rate: the mode for a fresh CI runner that has no history of its own noise.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgeship.config import Config
from edgeship.errors import UsageError
from edgeship.gating.budgets import Check
from edgeship.gating.checks import CheckResult
from edgeship.measure.interleave import Pair
from edgeship.measure.rounds import timing_rounds
from edgeship.measure.stats import paired_interval, permutation_pvalue, sign_flip_pvalue
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


# -- interleaved: baseline and candidate measured in the same minutes ---------------------------

SLOWER, NOT_SLOWER, UNKNOWN = "slower", "not slower", "unknown: run more"


@dataclass(frozen=True)
class PairedDecision:
    """What the paired rounds say: ``outcome`` is SLOWER, NOT_SLOWER or UNKNOWN."""

    outcome: str
    ratio: float        # candidate / baseline: exp(mean log ratio of the pairs' medians)
    low: float          # two-sided interval at 1 - 2 alpha_look; high is the one-sided (1 - alpha_look) bound
    high: float
    p: float            # sign-flip p value of "the candidate is slower"
    floor: float        # the smallest p these pairs allow
    alpha_look: float
    pairs: int


def decide_pairs(log_ratios: Sequence[float], alpha: float, threshold: float, looks: int = 1) -> PairedDecision:
    """Slower / not slower / unknown from interleaved pairs (Pinpoint's three answers, asv's
    significance-plus-size rule).

    - **slower**: the sign-flip test rejects "same artifact" at ``alpha / looks`` and the
      candidate is at least ``1 + threshold`` times the baseline (point estimate). With the
      order of each pair drawn at random, an A/A comparison says slower with probability at
      most ``alpha`` over all looks (exact; Bonferroni over the looks), however the machine drifts.
    - **not slower**: the one-sided upper (1 - alpha / looks) bound of the ratio is below
      ``1 + threshold``: a slowdown of the minimum size is ruled out at the same level
      (Student-t over the pairs' log ratios: drift cancels within a pair, so pairs are independent).
    - **unknown: run more** otherwise: too few pairs, or too much noise, for either.
    """
    a = alpha / looks
    d = np.asarray(log_ratios, dtype=np.float64)
    p, floor = sign_flip_pvalue(d)
    ratio, low, high = paired_interval(d, 1.0 - 2.0 * a)
    if p <= a and ratio >= 1.0 + threshold:
        outcome = SLOWER
    elif d.size >= 2 and high < 1.0 + threshold:
        outcome = NOT_SLOWER
    else:
        outcome = UNKNOWN
    return PairedDecision(outcome, ratio, low, high, p, floor, a, int(d.size))


def compare_interleaved(cfg: Config, device: str, candidate: str, baseline_name: str, measure: Callable[[int], list[Pair]],
                        threshold: float | None = None, more: bool = True) -> CheckResult:
    """One ``latency_regression`` check from pairs measured now (edgeship.measure.interleave):
    ``gate.compare_pairs`` pairs, and when the answer is unknown ``gate.max_rounds`` more (with
    ``more``), each look at alpha / 2. Verdict: FAIL slower, PASS not slower, MARGINAL unknown
    (which passes or fails on the point estimate like every MARGINAL)."""
    g = cfg.gate
    thr = g.regression_threshold if threshold is None else threshold
    looks = 2 if more and g.max_rounds > 0 else 1
    pairs = measure(g.compare_pairs)
    dec = decide_pairs([x.log_ratio() for x in pairs], g.regression_alpha, thr, looks)
    if dec.outcome == UNKNOWN and looks == 2:
        pairs += measure(g.max_rounds)
        dec = decide_pairs([x.log_ratio() for x in pairs], g.regression_alpha, thr, looks)
    check = Check(-1, device, candidate, "latency_regression", thr)
    base = "" if baseline_name == candidate else f" ({baseline_name})"
    ci = "" if math.isnan(dec.low) else f", {100 * (1 - 2 * dec.alpha_look):.3g}% CI [{dec.low:.3f}, {dec.high:.3f}]"
    detail = (f"{dec.outcome}: median {dec.ratio:.3f}x the baseline{base}{ci} over {dec.pairs} interleaved round pairs, "
              f"sign-flip p={dec.p:.2g} (slower: p <= {dec.alpha_look:.2g} and >= +{100 * thr:.0f}%; "
              f"false-alarm rate <= {g.regression_alpha:g})")
    if dec.outcome == UNKNOWN and dec.floor > dec.alpha_look:
        detail += f"; {dec.pairs} pairs cannot reach p <= {dec.alpha_look:.2g}: raise [gate] compare_pairs"
    elif dec.outcome == UNKNOWN:
        detail += "; re-run the gate or raise [gate] compare_pairs"
    verdict = {SLOWER: Verdict.FAIL, NOT_SLOWER: Verdict.PASS}.get(dec.outcome, Verdict.MARGINAL)
    passed = dec.outcome == NOT_SLOWER or (dec.outcome == UNKNOWN and dec.ratio < 1.0 + thr)
    return CheckResult(check, verdict, passed, dec.ratio, None if math.isnan(dec.low) else dec.low,
                       None if math.isnan(dec.high) else dec.high, detail)
