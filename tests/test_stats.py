"""Verdict logic on synthetic samples: no timing noise, a fake remeasure instead of a device."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgeship.gating.budgets import Check
from edgeship.gating.judge import decide_latency
from edgeship.measure.stats import bootstrap_ci, mann_whitney_u, stability_warnings, summarize
from edgeship.types import Verdict
from tests.conftest import make_config


def ns(ms: np.ndarray) -> list[int]:
    return [int(v * 1e6) for v in ms]


@pytest.fixture
def cfg(tmp_path: Path):
    return make_config(tmp_path)


def samples(median_ms: float, n: int = 400, spread: float = 0.02, seed: int = 0) -> list[int]:
    rng = np.random.default_rng(seed)
    return ns(median_ms * (1 + spread * rng.standard_normal(n)).clip(0.5, None))


class FakeRemeasure:
    """Stands in for a device: returns pre-scripted rounds of samples and counts calls."""

    def __init__(self, *rounds: list[int]) -> None:
        self.rounds = list(rounds)
        self.calls: list[tuple[str, str]] = []

    def __call__(self, device: str, artifact: str) -> list[int]:
        self.calls.append((device, artifact))
        return self.rounds.pop(0) if self.rounds else []


def check(limit: float, stat: str = "p90") -> Check:
    return Check(0, "local", "onnx-int8", f"latency_{stat}_ms", limit)


def test_clear_pass_and_clear_fail(cfg) -> None:
    s = samples(1.0)
    fake = FakeRemeasure()
    res, _ = decide_latency(check(1.5), s, cfg, fake)
    assert res.verdict is Verdict.PASS and res.passed and res.high <= 1.5
    res, _ = decide_latency(check(0.8), s, cfg, fake)
    assert res.verdict is Verdict.FAIL and not res.passed and res.low > 0.8
    assert fake.calls == []          # decisive results never re-measure


def test_straddling_ci_measures_longer_then_decides(cfg) -> None:
    s = samples(1.0, n=80, spread=0.2)
    p90 = float(np.percentile(np.array(s) / 1e6, 90))
    # each extra round repeats the same distribution, so the CI keeps straddling the budget
    fake = FakeRemeasure(*[list(s)] * cfg.gate.max_rounds)
    res, used = decide_latency(check(p90), s, cfg, fake)
    assert res.verdict is Verdict.MARGINAL
    assert len(fake.calls) == cfg.gate.max_rounds and len(used) == 1 + cfg.gate.max_rounds
    assert all(len(r) == 80 for r in used)       # one round per remeasure call
    assert res.passed == (res.value <= p90)
    assert "point estimate" in res.detail


def test_remeasure_that_returns_nothing_stops(cfg) -> None:
    """gate --no-remeasure hands a remeasure that returns no samples: decide on what is there."""
    s = samples(1.0, n=80, spread=0.2)
    p90 = float(np.percentile(np.array(s) / 1e6, 90))
    fake = FakeRemeasure()
    res, used = decide_latency(check(p90), s, cfg, fake)
    assert res.verdict is Verdict.MARGINAL and len(fake.calls) == 1 and len(used) == 1


def test_sequential_round_can_resolve(cfg) -> None:
    """A straddle on few samples resolves to PASS once more rounds shrink the CI."""
    s = samples(1.0, n=64, spread=0.3, seed=5)
    p90 = float(np.percentile(np.array(s) / 1e6, 90))
    limit = p90 * 1.15
    fake = FakeRemeasure(*[samples(1.0, 400, 0.3, 10 + i) for i in range(cfg.gate.max_rounds)])
    res, _ = decide_latency(check(limit), s, cfg, fake)
    assert res.verdict is Verdict.PASS
    assert len(fake.calls) >= 1


def test_p90_needs_64_samples(cfg) -> None:
    few = samples(1.0, n=40)
    res, used = decide_latency(check(100.0), few, cfg, None)
    assert res.verdict is Verdict.MARGINAL and "needs >= 64" in res.detail and res.passed
    fake = FakeRemeasure(samples(1.0, 40, seed=9))
    res, used = decide_latency(check(100.0), few, cfg, fake)
    assert res.verdict is Verdict.PASS and sum(len(r) for r in used) == 80 and len(used) == 2


def test_bootstrap_ci_covers_the_statistic() -> None:
    rng = np.random.default_rng(1)
    x = rng.lognormal(0, 0.3, 2000)
    point, lo, hi = bootstrap_ci(x, "p90", rng=np.random.default_rng(0))
    assert lo < point < hi
    assert lo < np.exp(0.3 * 1.2816) < hi     # true p90 of the lognormal
    again = bootstrap_ci(x, "p90", rng=np.random.default_rng(0))
    assert again == (point, lo, hi)           # seeded: reproducible verdicts


def test_mann_whitney_detects_shift_not_noise() -> None:
    rng = np.random.default_rng(3)
    base = 1.0 + 0.05 * rng.standard_normal(200)
    shifted = 1.10 + 0.05 * rng.standard_normal(200)
    same = 1.0 + 0.05 * rng.standard_normal(200)
    assert mann_whitney_u(shifted, base)[1] < 1e-6
    assert mann_whitney_u(same, base)[1] > 0.01
    # ties (quantized clocks) are handled
    assert mann_whitney_u([1, 1, 1, 2], [1, 1, 2, 2])[1] > 0.1


def test_mann_whitney_matches_scipy() -> None:
    scipy_stats = pytest.importorskip("scipy.stats")   # scipy ships with scikit-learn (demo extra)
    rng = np.random.default_rng(4)
    a, b = rng.normal(0, 1, 150), rng.normal(0.3, 1, 170)
    ours = mann_whitney_u(a, b)
    ref = scipy_stats.mannwhitneyu(a, b, alternative="two-sided", method="asymptotic")
    assert ours[1] == pytest.approx(ref.pvalue, rel=1e-6)


def test_stability_warnings_judge_robust_spread_not_the_tail_of_raw_samples() -> None:
    """The issue-27 measurement: p50 7.20 us, p90 7.42 us, a few preempted runs make the std 10x
    the mean. Healthy: no warning. What the gate's verdict depends on warns, one line at most."""
    from edgeship.measure.stats import stability_warning

    rng = np.random.default_rng(0)

    def rnd(level: float, n: int = 2000) -> np.ndarray:
        x = level * 7.2e-3 * (1 + 0.02 * np.abs(rng.standard_normal(n)))
        x[rng.choice(n, 3, replace=False)] = 2.0      # three preempted runs of 2 ms
        return x

    healthy = [rnd(1.0) for _ in range(5)]
    s = summarize(np.concatenate(healthy))
    assert s.std > 5 * s.mean                         # what the old rule warned on
    assert stability_warnings(s, rounds=healthy) == [] and stability_warning(s, ("p90",), healthy, cpu_share=0.98) is None
    drifting = [rnd(v) for v in (1.0, 1.3, 0.8, 1.25, 0.9)]
    w = stability_warning(summarize(np.concatenate(drifting)), ("p90",), drifting)
    assert w is not None and w.startswith("too noisy: round p90 varies") and "MAD/median over 5 rounds" in w
    w = stability_warning(s, ("p90",), healthy, cpu_share=0.55)
    assert w is not None and w.startswith("contended: the runner got 55% of a CPU")
    few = summarize([1.0] * 30)
    assert stability_warnings(few) == ["30 samples are too few for p90 (need >= 64); raise profile.min_runs"]
    # several problems: one line, the first the verdict depends on
    assert len(stability_warnings(summarize(np.concatenate(drifting)[:40]), rounds=drifting)) == 1
    one = [np.array([1.0, 2.0, 1.0, 3.0] * 20)]       # a single round: its IQR over its median
    assert stability_warning(summarize(one[0]), ("p90",), one).startswith("unstable: IQR is 83% of the median")
    assert stability_warnings(summarize([1.0] * 100), rounds=[[1.0] * 100]) == []
    # only when the verdict could change: a budget far outside the rounds' spread changes nothing
    ds = summarize(np.concatenate(drifting))
    far, near = {"p90": [100 * ds.p90]}, {"p90": [100 * ds.p90, 1.1 * ds.p90]}
    assert stability_warning(ds, ("p90",), drifting, limits=far) is None
    assert stability_warning(ds, ("p90",), drifting, limits=near).startswith("too noisy: round p90")
    assert stability_warning(s, ("p90",), healthy, cpu_share=0.55, limits=far).startswith("contended")
    # a busy device (Linux CPU pressure over the loops): the runner kept its CPU, the rounds agree,
    # yet other tasks queued for the CPUs; a quiet machine's 0-3% pressure says nothing
    assert stability_warning(s, ("p90",), healthy, cpu_share=0.99, pressure=0.02) is None
    w = stability_warning(s, ("p90",), healthy, cpu_share=0.99, pressure=0.93, limits=far)
    assert w is not None and w.startswith("busy: other tasks waited for a CPU 93% of the measured time")
    assert stability_warning(s, ("p90",), healthy, cpu_share=0.55, pressure=0.93).startswith("contended")  # one line


