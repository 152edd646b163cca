"""Regression check against a saved report.json: Mann-Whitney U on raw samples + effect size.

A regression needs both p < gate.regression_alpha and a median slowdown of at least
gate.regression_threshold (5% by default): significance alone flags trivial shifts on long
runs, effect size alone flags noise. Results from different hardware are refused unless
``force``: a baseline from another CPU says nothing about this change.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgeship.budgets import Check
from edgeship.config import Config
from edgeship.errors import UsageError
from edgeship.gating import CheckResult
from edgeship.stats import mann_whitney_u, ns_to_ms
from edgeship.types import Verdict

HARDWARE_KEYS = ("cpu", "machine", "cpu_count")


def _fingerprint(r: dict[str, Any]) -> tuple[Any, ...]:
    env = r.get("env") or {}
    rt = r.get("runtime") or {}
    return tuple(env.get(k) for k in HARDWARE_KEYS) + (rt.get("name"), rt.get("version"), rt.get("threads"))


def compare_baseline(cfg: Config, results: list[dict[str, Any]], baseline: dict[str, Any],
                     force: bool = False, threshold: float | None = None) -> list[CheckResult]:
    from edgeship.boards import EMULATED_TIMING, timing_counts

    thr = cfg.gate.regression_threshold if threshold is None else threshold
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
        new_ms, old_ms = ns_to_ms(r["timing"]["samples_ns"]), ns_to_ms(b["timing"]["samples_ns"])
        _, p = mann_whitney_u(new_ms, old_ms)
        ratio = float(np.median(new_ms) / np.median(old_ms))
        regressed = p < cfg.gate.regression_alpha and ratio >= 1.0 + thr
        check = Check(-1, key[0], key[1], "latency_regression", thr)
        detail = f"median {ratio:.3f}x baseline, Mann-Whitney p={p:.2g} (regression: p < {cfg.gate.regression_alpha:g} and >= +{100 * thr:.0f}%)"
        out.append(CheckResult(check, Verdict.FAIL if regressed else Verdict.PASS, not regressed, ratio, detail=detail))
    return out
