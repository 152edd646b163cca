"""Statistics for latency samples: summaries, bootstrap CIs (over samples, and two-level over
rounds of samples), Mann-Whitney U, permutation tests, stability.

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


def robust_cv(values: Sequence[float] | np.ndarray) -> float:
    """Robust relative spread: 1.4826 x MAD / median (the CV of a normal sample, but a few
    preempted runs or one outlying round cannot inflate it); 0 for fewer than 2 values."""
    v = np.asarray(values, dtype=np.float64)
    if v.size < 2:
        return 0.0
    med = float(np.median(v))
    return 1.4826 * float(np.median(np.abs(v - med))) / med if med > 0 else 0.0


def iqr_ratio(samples: Sequence[float] | np.ndarray) -> float:
    """(p75 - p25) / p50 of one process's samples: its spread, blind to the tail of preempted runs."""
    x = np.asarray(samples, dtype=np.float64)
    if x.size < 4:
        return 0.0
    q25, q50, q75 = np.percentile(x, [25, 50, 75])
    return float((q75 - q25) / q50) if q50 > 0 else 0.0


# How far (in robust spreads, log scale) a rerun's statistic may land from this one's: a budget
# inside point * exp(+-BAND * spread) is one whose verdict the spread could change.
BAND = 3.0


def stability_warning(s: Summary, gated: Sequence[str] = ("p90",), rounds: Sequence[Sequence[float] | np.ndarray] | None = None,
                      max_cv: float = 0.10, cpu_share: float | None = None, contended_share: float = 0.9,
                      limits: dict[str, Sequence[float]] | None = None, pressure: float | None = None,
                      busy_pressure: float = 0.25) -> str | None:
    """At most one warning for one artifact's measurement, and only for what changes a verdict.

    The standard deviation of raw samples is not judged: the tail of a few preempted runs makes
    it 10x the mean on a healthy measurement (p50 7.20 us, p90 7.42 us, std 1019% of the mean),
    while the gate's intervals are over rounds. What the gate's verdict depends on, in order:
    too few samples for a gated statistic (no interval: MARGINAL), a starved runner (``cpu_share``
    below ``contended_share``: a co-tenant; a FAIL becomes MARGINAL), the gated statistic of the
    rounds spreading more than ``max_cv`` (robust: MAD over the median of the round values; the
    gate flags such a device "too noisy"), and for a single round (no run-to-run spread to see)
    its samples' IQR over their median above ``max_cv``. ``rounds``: per-round samples in ms.
    A busy device comes before the spreads: ``pressure`` (the CPU pressure over the measured
    loops, edgeship.measure.rounds.cpu_pressures) at or above ``busy_pressure`` means other tasks
    queued for its CPUs. A short loop can outrun such a co-tenant (the runner got its CPU, the
    rounds agree), yet the next profile may not: the numbers are one draw of a shared machine.

    ``limits`` (statistic -> the latency budgets in ms that gate it here): a spread warns only
    when a budget lies within ``point * exp(+-BAND * spread)``, where a rerun could land on its
    other side; a p90 of 10 us that wanders 18% between rounds changes no verdict of a 1 ms
    budget. Without ``limits`` every gated statistic counts. A starved runner always warns: its
    session teaches the gate no noise, and every number it measured is inflated.
    """

    def could_flip(name: str, spread: float) -> bool:
        if limits is None:
            return True
        point = s.get(name)
        return any(point * math.exp(-BAND * spread) <= lim <= point * math.exp(BAND * spread)
                   for lim in limits.get(name, ()))

    for name in gated:
        need = MIN_SAMPLES[name]
        if s.count < need:
            return f"{s.count} samples are too few for {name} (need >= {need}); raise profile.min_runs"
    if cpu_share is not None and cpu_share < contended_share:
        return (f"contended: the runner got {cpu_share:.0%} of a CPU (< {contended_share:.0%}), so co-tenants slowed it; "
                "pin CPUs or isolate the device (docs/gate.md)")
    if pressure is not None and pressure >= busy_pressure:
        return (f"busy: other tasks waited for a CPU {pressure:.0%} of the measured time (CPU pressure >= "
                f"{busy_pressure:.0%}): a co-tenant may have slowed it; measure on a quiet device (docs/gate.md)")
    arrs = [np.asarray(r, dtype=np.float64) for r in rounds or [] if len(r)]
    if len(arrs) >= 2:
        spreads = [(robust_cv([float(statistic(a, n)) for a in arrs]), n) for n in gated]
        worst = max(((cv, n) for cv, n in spreads if could_flip(n, cv)), default=(0.0, ""))
        if worst[0] > max_cv:
            return (f"too noisy: round {worst[1]} varies {100 * worst[0]:.0f}% (MAD/median over {len(arrs)} rounds, "
                    f"> {100 * max_cv:.0f}%); pin CPUs, isolate the device or add rounds (docs/gate.md)")
    elif arrs and (spread := iqr_ratio(arrs[0])) > max_cv and any(could_flip(n, spread) for n in gated):
        return (f"unstable: IQR is {100 * spread:.0f}% of the median in its one round (> {100 * max_cv:.0f}%); "
                "pin CPUs or measure rounds (docs/gate.md)")
    return None


def stability_warnings(s: Summary, gated: Sequence[str] = ("p90",), rounds: Sequence[Sequence[float] | np.ndarray] | None = None,
                       max_round_cv: float = 0.10) -> list[str]:
    """``stability_warning`` as a list (empty or one line), for callers of the older API."""
    w = stability_warning(s, gated, rounds, max_round_cv)
    return [w] if w else []


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


# -- rounds: the run, not the sample, is the unit of noise --------------------------------------

# Draws per bootstrap replicate are capped (spread equally over the chosen rounds) so long
# runs stay fast; drawing fewer than a round holds only widens the within-round part.
MAX_DRAWS = 20_000


def t_quantile(p: float, df: int) -> float:
    """Student-t quantile without scipy: exact for df 1 and 2, Cornish-Fisher beyond (error
    < 0.3% at df >= 3 for the tail probabilities a CI uses)."""
    from statistics import NormalDist

    if df < 1:
        raise ValueError("df must be >= 1")
    if df == 1:
        return math.tan(math.pi * (p - 0.5))
    if df == 2:
        return (2 * p - 1) / math.sqrt(2 * p * (1 - p))
    z = NormalDist().inv_cdf(p)
    v = float(df)
    return (z + (z**3 + z) / (4 * v) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * v**2)
            + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * v**3))


def small_rounds_factor(rounds: int, confidence: float) -> float:
    """How much a percentile-bootstrap interval over ``rounds`` clusters must be widened.

    Resampling R rounds underestimates the between-round variance by (R-1)/R and a normal
    quantile stands in for a t with R-1 degrees of freedom: Hesterberg's "expanded percentile
    interval" corrects both, sqrt(R/(R-1)) * t(R-1) / z; applied here as a scale on the
    interval's half-widths (1.58 for 5 rounds at 95%, -> 1 as rounds grow).
    """
    from statistics import NormalDist

    if rounds < 2:
        return 1.0
    q = 1.0 - (1.0 - confidence) / 2.0
    return math.sqrt(rounds / (rounds - 1)) * t_quantile(q, rounds - 1) / NormalDist().inv_cdf(q)


def hierarchical_bootstrap(
    rounds: Sequence[Sequence[float] | np.ndarray], name: str, confidence: float = 0.95, resamples: int = 2000,
    rng: np.random.Generator | None = None, expand: bool = True,
) -> tuple[float, float, float]:
    """(point, low, high): two-level bootstrap CI of the statistic over rounds of samples.

    Each replicate draws R rounds with replacement, then samples with replacement within each
    chosen round (the same number from each: a round is the unit, whatever its length), and
    computes the statistic of the pooled draws. The spread of the replicates thus carries the
    round-to-round noise, which a bootstrap over pooled samples hides. The point estimate is the
    statistic of all samples pooled. ``expand`` widens the interval for few rounds
    (``small_rounds_factor``).
    """
    arrs = [np.asarray(r, dtype=np.float64) for r in rounds]
    arrs = [a for a in arrs if a.size]
    if not arrs:
        raise ValueError("no samples")
    flat = np.concatenate(arrs)
    point = float(statistic(flat, name))
    r = len(arrs)
    sizes = np.array([a.size for a in arrs], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    m = max(1, min(math.ceil(flat.size / r), MAX_DRAWS // r))
    rng = rng or np.random.default_rng(0)
    out = []
    chunk = max(1, 2_000_000 // (r * m))
    for start in range(0, resamples, chunk):
        n = min(chunk, resamples - start)
        ks = rng.integers(0, r, size=(n, r))
        idx = offsets[ks][..., None] + (rng.random((n, r, m)) * sizes[ks][..., None]).astype(np.int64)
        out.append(statistic(flat[idx].reshape(n, r * m), name, axis=1))
    boot = np.concatenate(out)
    alpha = (1.0 - confidence) / 2.0
    low, high = (float(v) for v in np.quantile(boot, [alpha, 1.0 - alpha]))
    if expand and r >= 2:
        k = small_rounds_factor(r, confidence)
        low, high = point - k * max(point - low, 0.0), point + k * max(high - point, 0.0)
    return point, low, high


@dataclass(frozen=True)
class RoundSpread:
    """The gated statistic of each round on its own: the run-to-run noise, shown next to the CI."""

    rounds: int
    values: tuple[float, ...]
    min: float
    max: float
    cv: float          # std (ddof=1) / mean of the per-round values; 0 for one round

    def describe(self, name: str) -> str:
        if self.rounds < 2:
            return "1 round"
        return f"{self.rounds} rounds, round {name} {self.min:.4g}..{self.max:.4g} ms, CV {100 * self.cv:.1f}%"


def round_spread(rounds: Sequence[Sequence[float] | np.ndarray], name: str) -> RoundSpread:
    vals = [float(statistic(np.asarray(r, dtype=np.float64), name)) for r in rounds if len(r)]
    if not vals:
        raise ValueError("no samples")
    v = np.asarray(vals)
    cv = float(v.std(ddof=1) / v.mean()) if v.size > 1 and v.mean() > 0 else 0.0
    return RoundSpread(len(vals), tuple(vals), float(v.min()), float(v.max()), cv)


def permutation_pvalue(new: Sequence[float], old: Sequence[float], shift: float = 0.0,
                       rng: np.random.Generator | None = None, max_exact: int = 50_000,
                       resamples: int = 20_000) -> tuple[float, float]:
    """One-sided permutation test that ``new`` exceeds ``old + shift`` in mean: (p, smallest p
    possible with these group sizes).

    Exact over all splits when there are at most ``max_exact`` of them (5+5 rounds: 252), else
    ``resamples`` random ones. Used on per-round log statistics, where ``shift = log(1 + t)``
    asks whether the slowdown exceeds t beyond the round-to-round noise.
    """
    from itertools import combinations

    a = np.asarray(new, dtype=np.float64) - shift
    b = np.asarray(old, dtype=np.float64)
    n1, n2 = a.size, b.size
    if n1 == 0 or n2 == 0:
        raise ValueError("both groups must be non-empty")
    pooled = np.concatenate([a, b])
    total = pooled.sum()
    observed = a.mean() - b.mean()
    splits = math.comb(n1 + n2, n1)
    if splits <= max_exact:
        idx = np.array(list(combinations(range(n1 + n2), n1)), dtype=np.int64)
    else:
        rng = rng or np.random.default_rng(0)
        idx = np.argsort(rng.random((resamples, n1 + n2)), axis=1)[:, :n1]
    s1 = pooled[idx].sum(axis=1)
    diffs = s1 / n1 - (total - s1) / n2
    hits = int(np.count_nonzero(diffs >= observed - 1e-12 * max(1.0, abs(observed))))
    if splits <= max_exact:
        return hits / splits, 1.0 / splits
    return (hits + 1) / (resamples + 1), 1.0 / (resamples + 1)


# -- paired rounds: two artifacts measured interleaved in one session ---------------------------

def paired_interval(log_ratios: Sequence[float], confidence: float) -> tuple[float, float, float]:
    """(point, low, high) of the ratio exp(mean log ratio) from paired rounds: a two-sided
    Student-t interval over the pairs. Each pair's two rounds ran back to back, so the drift of
    the machine (slower than a round pair) is common to both and cancels in the log ratio;
    what is left is independent from pair to pair. One pair: (point, nan, nan)."""
    d = np.asarray(log_ratios, dtype=np.float64)
    if d.size == 0:
        raise ValueError("no pairs")
    m = float(d.mean())
    if d.size < 2:
        return math.exp(m), math.nan, math.nan
    half = t_quantile(1.0 - (1.0 - confidence) / 2.0, d.size - 1) * float(d.std(ddof=1)) / math.sqrt(d.size)
    return math.exp(m), math.exp(m - half), math.exp(m + half)


def sign_flip_pvalue(log_ratios: Sequence[float], rng: np.random.Generator | None = None, max_exact: int = 16,
                     resamples: int = 50_000) -> tuple[float, float]:
    """One-sided randomization test that the pairs' mean log ratio exceeds 0: (p, smallest p
    possible with this many pairs).

    When the order of the two artifacts within each pair was drawn at random (a fair coin per
    pair), then under "the two are the same artifact" every sign pattern of the log ratios was
    as likely as the one observed, whatever the machine did meanwhile: the p value is exact,
    not an approximation, so a threshold alpha bounds the false-alarm rate of an A/A comparison
    by alpha (Fisher's randomization test; asv and Pinpoint use rank tests of the same spirit).
    Exact over all 2^n sign patterns up to ``max_exact`` pairs, else ``resamples`` random ones.
    """
    d = np.asarray(log_ratios, dtype=np.float64)
    n = d.size
    if n == 0:
        raise ValueError("no pairs")
    observed = float(d.sum())
    tol = 1e-12 * max(1.0, float(np.abs(d).sum()))
    if n <= max_exact:
        signs = 1 - 2 * ((np.arange(2**n)[:, None] >> np.arange(n)) & 1)
        hits = int(np.count_nonzero(signs @ d >= observed - tol))
        return hits / 2**n, 1.0 / 2**n
    rng = rng or np.random.default_rng(0)
    signs = rng.choice(np.array([-1.0, 1.0]), size=(resamples, n))
    hits = int(np.count_nonzero(signs @ d >= observed - tol))
    return (hits + 1) / (resamples + 1), 1.0 / (resamples + 1)
