"""Statistics for latency samples: summaries, bootstrap CIs, Mann-Whitney U, stability.

Pure numpy functions; the random generator is injected so verdicts are reproducible and
testable on synthetic samples.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

STATISTICS = ("p50", "p90", "p99", "mean")
# Fewest samples for a percentile to be gated at all (MLPerf single-stream needs >= 64 for
# p90; p99 by the same rule of >= ~6 samples above the percentile needs 600).
MIN_SAMPLES = {"p50": 16, "p90": 64, "p99": 600, "mean": 16}


def statistic(samples: np.ndarray, name: str, axis: int = -1) -> np.ndarray:
    if name == "mean":
        return np.mean(samples, axis=axis)
    q = {"p50": 50.0, "p90": 90.0, "p99": 99.0}[name]
    return np.percentile(samples, q, axis=axis)


def bootstrap_ci(
    samples: Sequence[float], name: str, confidence: float = 0.95, resamples: int = 2000,
    rng: np.random.Generator | None = None,
) -> tuple[float, float, float]:
    """(point, low, high): percentile-bootstrap CI of ``statistic(samples, name)``."""
    x = np.asarray(samples, dtype=np.float64)
    if x.size == 0:
        raise ValueError("no samples")
    rng = rng or np.random.default_rng(0)
    point = float(statistic(x, name))
    # resample in chunks to keep memory flat for long runs
    stats = []
    chunk = max(1, 2_000_000 // x.size)
    for start in range(0, resamples, chunk):
        n = min(chunk, resamples - start)
        idx = rng.integers(0, x.size, size=(n, x.size))
        stats.append(statistic(x[idx], name, axis=1))
    boot = np.concatenate(stats)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(boot, [alpha, 1.0 - alpha])
    return point, float(low), float(high)


def mann_whitney_u(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """Two-sided Mann-Whitney U test (normal approximation with tie correction): (U, p)."""
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    n1, n2 = x.size, y.size
    if n1 == 0 or n2 == 0:
        raise ValueError("both samples must be non-empty")
    allv = np.concatenate([x, y])
    order = np.argsort(allv, kind="mergesort")
    ranks = np.empty(allv.size, dtype=np.float64)
    sorted_v = allv[order]
    # average ranks over ties
    _, first, counts = np.unique(sorted_v, return_index=True, return_counts=True)
    avg = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(avg, counts)
    r1 = ranks[:n1].sum()
    u1 = r1 - n1 * (n1 + 1) / 2.0
    n = n1 + n2
    tie = (counts**3 - counts).sum() / (n * (n - 1)) if n > 1 else 0.0
    sigma = math.sqrt(n1 * n2 / 12.0 * ((n + 1) - tie))
    if sigma == 0:
        return float(u1), 1.0
    mu = n1 * n2 / 2.0
    z = (abs(u1 - mu) - 0.5) / sigma   # continuity correction
    p = math.erfc(max(z, 0.0) / math.sqrt(2.0))
    return float(u1), float(min(1.0, p))


@dataclass(frozen=True)
class Summary:
    count: int
    p50: float
    p90: float
    p99: float
    mean: float
    std: float
    mad: float
    min: float
    max: float

    def get(self, name: str) -> float:
        return float(getattr(self, name))


def summarize(samples_ms: Sequence[float]) -> Summary:
    x = np.asarray(samples_ms, dtype=np.float64)
    if x.size == 0:
        raise ValueError("no samples")
    med = float(np.median(x))
    return Summary(
        count=int(x.size), p50=med, p90=float(np.percentile(x, 90)), p99=float(np.percentile(x, 99)),
        mean=float(x.mean()), std=float(x.std(ddof=1)) if x.size > 1 else 0.0,
        mad=float(np.median(np.abs(x - med))), min=float(x.min()), max=float(x.max()),
    )


def stability_warnings(s: Summary, gated: Sequence[str] = ("p90",)) -> list[str]:
    """pyperf-style warnings: noisy runs and too few samples for the gated statistic."""
    out = []
    if s.mean > 0 and s.std >= 0.10 * s.mean:
        out.append(f"unstable: std is {100 * s.std / s.mean:.0f}% of the mean (>= 10%); close other programs or pin CPUs")
    for name in gated:
        need = MIN_SAMPLES[name]
        if s.count < need:
            out.append(f"{s.count} samples are too few for {name} (need >= {need}); raise profile.min_runs")
    return out


def ns_to_ms(samples_ns: Sequence[int]) -> np.ndarray:
    return np.asarray(samples_ns, dtype=np.float64) / 1e6


def timing_summary(timing: dict) -> Summary:
    """Summary of a result's timing block: from raw samples, or from a native tool's
    printed aggregates (adb results carry no per-run samples; missing fields are NaN)."""
    if timing.get("samples_ns"):
        return summarize(ns_to_ms(timing["samples_ns"]))
    agg = timing.get("aggregate") or {}
    nan = float("nan")

    def ms(key: str) -> float:
        v = agg.get(key)
        return nan if v is None else float(v) / 1e6

    return Summary(count=int(agg.get("count") or 0), p50=ms("p50"), p90=ms("p90"), p99=ms("p99"), mean=ms("mean"),
                   std=ms("std"), mad=nan, min=ms("min"), max=ms("max"))
