"""Rounds as the unit of evidence, on synthetic rounds (no timing is asserted anywhere).

A drifting machine (rounds whose levels differ by 15%) must widen the interval and give a
MARGINAL, where the pooled bootstrap over one process's samples would have been confidently
wrong; stable rounds far from the budget still decide; baselines compare rounds; profile
interleaves the rounds across artifacts (a recording device stands in for the runner).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgeship.gating.budgets import Check
from edgeship.gating.checks import CheckResult
from edgeship.gating.judge import decide_latency, flag_noisy_devices
from edgeship.measure.rounds import merge_aggregates, round_plan, timing_rounds
from edgeship.measure.stats import (
    bootstrap_ci,
    hierarchical_bootstrap,
    permutation_pvalue,
    round_spread,
    small_rounds_factor,
    t_quantile,
)
from edgeship.types import Verdict
from tests.conftest import make_config


@pytest.fixture
def cfg(tmp_path: Path):
    return make_config(tmp_path)


def rounds_at(levels: list[float], n: int = 40, spread: float = 0.02, seed: int = 0) -> list[list[int]]:
    """One round per level (ms): its samples scatter ``spread`` around the level."""
    rng = np.random.default_rng(seed)
    return [[int(v * 1e6) for v in lv * (1 + spread * rng.standard_normal(n))] for lv in levels]


def timing(rounds: list[list[int]]) -> dict[str, Any]:
    return {"samples_ns": [s for r in rounds for s in r], "rounds": [{"samples_ns": r} for r in rounds]}


def check(limit: float, stat: str = "p90", device: str = "local", artifact: str = "onnx-int8") -> Check:
    return Check(0, device, artifact, f"latency_{stat}_ms", limit)


DRIFT = [1.0, 1.0375, 1.075, 1.1125, 1.15]      # medians 15% apart: a machine whose speed wanders


def test_drifting_rounds_widen_the_interval_and_give_marginal(cfg) -> None:
    rs = rounds_at(DRIFT)
    ms = [np.asarray(r) / 1e6 for r in rs]
    point, lo, hi = hierarchical_bootstrap(ms, "p90", rng=np.random.default_rng(0))
    _, plo, phi = bootstrap_ci(np.concatenate(ms), "p90", rng=np.random.default_rng(0))
    assert lo < point < hi and (hi - lo) > 3 * (phi - plo)     # the pooled interval hides the drift
    # a budget just above the pooled interval: the pooled bootstrap would PASS it confidently
    limit = phi * 1.01
    res, used = decide_latency(check(limit), timing(rs), cfg, None)
    assert res.verdict is Verdict.MARGINAL and res.high > limit and res.low <= limit
    assert used == rs and res.rounds is not None and res.rounds["count"] == 5
    assert res.rounds["max_ms"] / res.rounds["min_ms"] > 1.1 and "5 rounds" in res.detail and "CV" in res.detail


def test_drifting_rounds_keep_straddling_while_remeasured(cfg) -> None:
    rs = rounds_at(DRIFT)
    more = rounds_at(DRIFT[::-1], seed=1)
    calls: list[tuple[str, str]] = []

    def remeasure(device: str, artifact: str) -> list[int]:
        calls.append((device, artifact))
        return more[len(calls) - 1] if len(calls) <= len(more) else []

    point = float(np.percentile(np.concatenate([np.asarray(r) for r in rs]) / 1e6, 90))
    res, used = decide_latency(check(point * 1.02), timing(rs), cfg, remeasure)
    assert res.verdict is Verdict.MARGINAL
    assert calls == [("local", "onnx-int8")] * cfg.gate.max_rounds and len(used) == 5 + cfg.gate.max_rounds
    assert "straddles" in res.detail and res.passed == (res.value <= point * 1.02)


@pytest.mark.parametrize("factor,verdict", [(1.2, Verdict.PASS), (0.8, Verdict.FAIL)])
def test_stable_rounds_far_from_the_budget_decide(cfg, factor: float, verdict: Verdict) -> None:
    rs = rounds_at([1.0, 1.005, 0.995, 1.002, 0.998])
    point = float(np.percentile(np.concatenate([np.asarray(r) for r in rs]) / 1e6, 90))
    res, _ = decide_latency(check(point * factor), timing(rs), cfg, None)
    assert res.verdict is verdict and res.passed is (verdict is Verdict.PASS)
    assert res.low < res.value < res.high and res.rounds["cv"] < 0.02


def test_one_round_is_honest_about_its_interval(cfg) -> None:
    """An old result (no rounds): its CI reflects within-process noise only, so it decides only
    when the budget is far outside it; otherwise MARGINAL."""
    (one,) = rounds_at([1.0], n=200)
    p90 = float(np.percentile(np.asarray(one) / 1e6, 90))
    res, used = decide_latency(check(p90 * 1.08), {"samples_ns": one}, cfg, None)
    assert res.verdict is Verdict.MARGINAL and "1 round: interval reflects within-process noise only" in res.detail
    assert used == [one]
    assert decide_latency(check(p90 * 1.5), one, cfg, None)[0].verdict is Verdict.PASS
    assert decide_latency(check(p90 * 0.6), one, cfg, None)[0].verdict is Verdict.FAIL


def test_hierarchical_bootstrap_is_seeded_and_handles_unequal_rounds() -> None:
    rs = [np.asarray(r) / 1e6 for r in rounds_at([1.0, 1.1, 0.9], n=30)] + [np.full(300, 1.0)]
    a = hierarchical_bootstrap(rs, "p50", rng=np.random.default_rng(3))
    assert a == hierarchical_bootstrap(rs, "p50", rng=np.random.default_rng(3))
    assert a[1] < a[0] < a[2]
    with pytest.raises(ValueError):
        hierarchical_bootstrap([[]], "p90")


def test_small_rounds_factor_and_t_quantiles() -> None:
    # reference values of Student's t (two-sided 95%)
    for df, t in ((1, 12.706), (2, 4.303), (4, 2.776), (9, 2.262), (30, 2.042)):
        assert t_quantile(0.975, df) == pytest.approx(t, rel=0.005)
    assert small_rounds_factor(5, 0.95) == pytest.approx(math.sqrt(5 / 4) * 2.776 / 1.960, rel=0.005)
    assert small_rounds_factor(1, 0.95) == 1.0 and 1.0 < small_rounds_factor(50, 0.95) < 1.05


def test_round_spread() -> None:
    s = round_spread([[1.0] * 10, [1.2] * 10], "p50")
    assert s.rounds == 2 and s.min == 1.0 and s.max == 1.2 and s.cv == pytest.approx(np.std([1, 1.2], ddof=1) / 1.1)
    assert round_spread([[1.0, 2.0]], "p50").cv == 0.0


def _latency_result(device: str, cv: float | None, metric: str = "latency_p90_ms") -> CheckResult:
    c = Check(0, device, "onnx-int8", metric, 1.0)
    rounds = None if cv is None else {"count": 5, "values_ms": [], "min_ms": 0.9, "max_ms": 1.1, "cv": cv}
    return CheckResult(c, Verdict.PASS, True, 0.9, 0.8, 0.95, "p90 ...", rounds)


def test_a_noisy_device_marks_every_latency_verdict_on_it(cfg) -> None:
    results = [_latency_result("local", 0.14), _latency_result("local", 0.03), _latency_result("pi4", 0.05),
               _latency_result("local", None, "peak_memory_mb")]
    out = flag_noisy_devices(results, cfg)
    assert [r.detail.startswith("too noisy: round-to-round CV up to 14% on 'local'") for r in out] == [True, True, False, False]
    assert all(a.verdict is b.verdict for a, b in zip(out, results))
    quiet = make_config(cfg.root, gate={"max_round_cv": 0.2})
    assert [r.detail for r in flag_noisy_devices(results, quiet)] == [r.detail for r in results]


def test_gate_sees_a_noisy_device(cfg) -> None:
    rs = rounds_at([1.0, 1.3, 0.8, 1.25, 0.9])
    res, _ = decide_latency(check(5.0), timing(rs), cfg, None)
    (flagged,) = flag_noisy_devices([res], cfg)
    assert res.rounds["cv"] > 0.1 and flagged.detail.startswith("too noisy") and flagged.verdict is Verdict.PASS


# -- baselines compare rounds ------------------------------------------------------------------

def _baseline_result(levels: list[float], seed: int) -> dict[str, Any]:
    return {"device": {"name": "local"}, "artifact": {"name": "onnx-fp32"}, "status": "ok",
            "env": {"cpu": "Fake CPU", "machine": "x86_64", "cpu_count": 2},
            "runtime": {"name": "onnxruntime", "version": "1", "threads": 1}, "timing": timing(rounds_at(levels, seed=seed))}


def _compare(cfg, new: list[float], old: list[float]) -> CheckResult:
    from edgeship.gating.baseline import compare_baseline

    (out,) = compare_baseline(cfg, [_baseline_result(new, 1)], {"results": [_baseline_result(old, 2)]})
    return out


QUIET = [1.0, 1.01, 0.99, 1.005, 0.995]      # rounds 1% apart
NOISY = [1.0, 1.08, 0.92, 1.04, 0.96]        # rounds 8% apart


def test_baseline_flags_a_shift_beyond_the_round_noise(cfg) -> None:
    res = _compare(cfg, [1.10 * v for v in QUIET], QUIET)
    assert res.verdict is Verdict.FAIL and res.value == pytest.approx(1.10, rel=0.02) and "5 vs 5 rounds" in res.detail


def test_baseline_does_not_flag_a_shift_within_threshold_or_noise(cfg) -> None:
    # 5% exactly: not beyond the 5% threshold
    assert _compare(cfg, [1.05 * v for v in QUIET], QUIET).verdict is Verdict.PASS
    # 10% on rounds that themselves wander +-8%: not 5% beyond the run-to-run noise ...
    res = _compare(cfg, [1.10 * v for v in NOISY[::-1]], NOISY)
    assert res.verdict is Verdict.PASS and res.value > 1.05
    # ... although a test over the pooled samples of the same runs calls it highly significant
    from edgeship.measure.stats import mann_whitney_u

    new, old = _baseline_result([1.10 * v for v in NOISY[::-1]], 1), _baseline_result(NOISY, 2)
    assert mann_whitney_u(new["timing"]["samples_ns"], old["timing"]["samples_ns"])[1] < 1e-6


def test_baseline_with_too_few_rounds_is_marginal(cfg) -> None:
    res = _compare(cfg, [1.2, 1.21], [1.0, 1.01])      # 2+2 rounds: p can never be < 0.01
    assert res.verdict is Verdict.MARGINAL and not res.passed and "too few" in res.detail


def test_permutation_pvalue_exact() -> None:
    p, floor = permutation_pvalue([3.0, 4.0, 5.0], [0.0, 1.0, 2.0])
    assert floor == pytest.approx(1 / 20) and p == pytest.approx(1 / 20)
    p, _ = permutation_pvalue([3.0, 4.0, 5.0], [0.0, 1.0, 2.0], shift=3.0)
    assert p > 0.3


# -- the rounds loop ---------------------------------------------------------------------------

def test_round_plan_splits_the_budget(cfg) -> None:
    plan = round_plan(cfg, "local")
    p = plan.cfg.profile
    assert plan.rounds == 5 and p.min_runs == math.ceil(cfg.profile.min_runs / 5)
    assert p.min_seconds == pytest.approx(cfg.profile.min_seconds / 5) and p.warmup_runs == cfg.profile.warmup_runs
    assert plan.cfg.digest == cfg.digest
    assert round_plan(cfg, "ssh").rounds == 3 and round_plan(cfg, "adb").rounds == 3
    assert round_plan(make_config(cfg.root, profile={"rounds": 7}), "ssh").rounds == 7
    assert round_plan(cfg, "local", min_runs=64, rounds=3).cfg.profile.min_runs == 22    # 3 x 22 >= 64


def _fake_artifacts(cfg, names: list[str]) -> None:
    from edgeship.artifact.manifest import Manifest, TensorInfo, file_table

    for name in names:
        target, precision = name.split("-", 1)
        d = cfg.artifacts_dir / name
        d.mkdir(parents=True)
        (d / "model.onnx").write_bytes(name.encode())
        Manifest(model=cfg.model.name, target=target, precision=precision, runtime="onnxruntime", model_file="model.onnx",
                 inputs=[TensorInfo("image", [1, 1, 8, 8], "float32")], outputs=[], files=file_table(d), recipe={},
                 calibration=None, config_digest="", versions={}, created="").write(d)


def test_profile_interleaves_rounds_across_artifacts(cfg, monkeypatch: pytest.MonkeyPatch) -> None:
    """A recording device (the local device with the runner replaced by a scripted result):
    round 1 of every artifact, then round 2 ..., each round its own process and settings."""
    from edgeship.devices.local import LocalDevice
    from edgeship.errors import MissingDependency
    from edgeship.measure import profile as profiling
    from edgeship.model import reference as model

    names = ["onnx-fp32", "onnx-fp16", "onnx-int8"]
    _fake_artifacts(cfg, names)
    calls: list[tuple[str, int, float]] = []

    class Recording(LocalDevice):
        def run(self, argv, timeout, cwd=None):
            from edgeship.devices.base import RunResult

            opt = {argv[i]: argv[i + 1] for i in range(len(argv) - 1) if argv[i].startswith("--")}
            art = next(n for n in names if f"bundle-{n}" in opt["--artifact"])
            calls.append((art, int(opt["--min-runs"]), float(opt["--min-seconds"])))
            k = len(calls)
            result = {"schema": "edgeship.result/1", "status": "ok", "skip_reason": None, "settings": {},
                      "env": {"cpu": "Fake"}, "runtime": {"name": "onnxruntime"},
                      "timing": {"load_ns": 1000 + k, "first_ns": 10 + k, "warmup_runs": 5, "capped": False,
                                 "samples_ns": [k * 1000 + i for i in range(int(opt["--min-runs"]))]},
                      "memory": {"init_peak_kb": 100 + k, "steady_peak_kb": 50}}
            Path(opt["--out"]).write_text(json.dumps(result))
            return RunResult(argv, 0, "", "", 0.0)

    def no_torch(cfg):
        raise MissingDependency("torch", "torch", "the FP32 reference")

    monkeypatch.setattr(model, "load_reference", no_torch)
    monkeypatch.setattr(profiling, "open_device", lambda name, cfg: Recording(name))
    results = profiling.profile(cfg, "local", rounds=4)
    order = [c[0] for c in calls]
    assert order == [n for _ in range(4) for n in ("onnx-fp32", "onnx-fp16", "onnx-int8")]
    assert {c[1:] for c in calls} == {(25, cfg.profile.min_seconds / 4)}    # 100 runs, 1 s over 4 rounds
    for r in results:
        t = r["timing"]
        assert len(t["rounds"]) == 4 and t["samples_ns"] == [s for e in t["rounds"] for s in e["samples_ns"]]
        loads = [e["load_ns"] for e in t["rounds"]]
        assert len(set(loads)) == 4 and t["load_ns"] == loads[0]        # every round its own load
        assert r["memory"]["init_peak_kb"] == max(100 + i for i in range(1, 13) if order[i - 1] == r["artifact"]["name"])
        assert r["settings"]["rounds"] == 4 and set(r["outputs"]) == {"skipped"}
        assert timing_rounds(t) == [e["samples_ns"] for e in t["rounds"]]
        saved = json.loads((cfg.build / "results" / "local" / f"{r['artifact']['name']}.json").read_text())
        assert saved["timing"]["rounds"] == t["rounds"]


def test_merge_aggregates_of_native_rounds() -> None:
    aggs = [{"count": 50, "mean": 10.0, "p50": 9.0, "min": 8.0, "max": 20.0, "p90": None, "unit": "ns", "x": "a"},
            {"count": 50, "mean": 12.0, "p50": 11.0, "min": 7.0, "max": 15.0, "p90": None, "unit": "ns", "x": "b"},
            {"count": 40, "mean": 11.0, "p50": 10.0, "min": 9.0, "max": 30.0, "p90": None, "unit": "ns", "x": "a"}]
    assert merge_aggregates(aggs) == {"count": 140, "mean": 11.0, "p50": 10.0, "min": 7.0, "max": 30.0, "p90": None,
                                      "unit": "ns", "x": None}


def test_profile_table_warns_when_rounds_disagree(demo_config) -> None:
    from edgeship.commands.profile import format_results

    def result(levels: list[float]) -> dict[str, Any]:
        rs = rounds_at(levels)
        return {"status": "ok", "device": {"name": "local"}, "runtime": {"name": "onnxruntime"},
                "artifact": {"name": "onnx-int8", "target": "onnx", "precision": "int8", "size_bytes": 2048},
                "timing": {**timing(rs), "load_ns": 1, "first_ns": 1}, "memory": {}}

    noisy = format_results([result([1.0, 1.3, 0.8, 1.25, 0.9])], demo_config)
    assert "warning: onnx-int8: too noisy: round p90 varies" in noisy
    assert "too noisy" not in format_results([result([1.0, 1.01, 0.99, 1.0, 1.0])], demo_config)
    # the demo budgets p90 <= 1 ms: the same spread around 10 us changes no verdict (issue 27)
    assert "too noisy" not in format_results([result([0.01, 0.013, 0.008, 0.0125, 0.009])], demo_config)


def _with_share(rs: list[list[int]], share: float) -> dict[str, Any]:
    t = timing(rs)
    for e, r in zip(t["rounds"], rs):
        e["wall_ns"] = sum(r)
        e["cpu_ns"] = int(share * sum(r))
    return t


def test_a_fail_measured_while_co_tenants_took_the_cpu_is_not_trusted(cfg) -> None:
    """All rounds slowed alike by a long co-tenant spell look stable; the runner's CPU share shows it."""
    rs = rounds_at([1.0, 1.005, 0.995, 1.002, 0.998])
    point = float(np.percentile(np.concatenate([np.asarray(r) for r in rs]) / 1e6, 90))
    res, _ = decide_latency(check(point * 0.8), _with_share(rs, 0.7), cfg, None)
    assert res.verdict is Verdict.MARGINAL and not res.passed and res.detail.startswith("contended: the runner got 70% of a CPU")
    assert decide_latency(check(point * 0.8), _with_share(rs, 0.98), cfg, None)[0].verdict is Verdict.FAIL
    assert decide_latency(check(point * 1.2), _with_share(rs, 0.7), cfg, None)[0].verdict is Verdict.PASS   # slowed and still within
