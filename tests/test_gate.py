"""Baseline comparison on synthetic results: effect size AND significance, same hardware only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgeship.errors import UsageError
from edgeship.gating.baseline import compare_baseline
from edgeship.types import Verdict
from tests.conftest import make_config


def result(median_ms: float, seed: int, n: int = 200, cpu: str = "Fake CPU @ 3GHz", rounds: int = 5,
           round_noise: float = 0.01) -> dict[str, Any]:
    """Synthetic rounds: each round's level moves by ``round_noise`` (run-to-run), its samples by 3%."""
    rng = np.random.default_rng(seed)
    per = []
    for _ in range(rounds):
        level = median_ms * (1 + round_noise * rng.standard_normal())
        per.append([int(v * 1e6) for v in level * (1 + 0.03 * rng.standard_normal(n // rounds))])
    return {"device": {"name": "local"}, "artifact": {"name": "onnx-fp32"}, "status": "ok",
            "env": {"cpu": cpu, "machine": "x86_64", "cpu_count": 2},
            "runtime": {"name": "onnxruntime", "version": "1.32.0", "threads": 1},
            "timing": {"samples_ns": [s for r in per for s in r], "rounds": [{"samples_ns": r} for r in per]}}


@pytest.fixture
def cfg(tmp_path: Path):
    return make_config(tmp_path)


def compare(cfg, new: dict[str, Any], old: dict[str, Any], **kw: Any):
    (out,) = compare_baseline(cfg, [new], {"results": [old]}, **kw)
    return out


def test_ten_percent_shift_over_5_rounds_is_a_regression(cfg) -> None:
    res = compare(cfg, result(1.10, seed=1), result(1.0, seed=2))
    assert res.verdict is Verdict.FAIL and not res.passed
    assert res.check.metric == "latency_regression" and res.value == pytest.approx(1.10, rel=0.02)


def test_one_percent_shift_and_pure_noise_are_not(cfg) -> None:
    # 1%: may well be significant on 200 samples, but below the 5% effect threshold
    assert compare(cfg, result(1.01, seed=1), result(1.0, seed=2)).verdict is Verdict.PASS
    assert compare(cfg, result(1.0, seed=3), result(1.0, seed=4)).verdict is Verdict.PASS


def test_threshold_is_configurable(cfg) -> None:
    assert compare(cfg, result(1.10, seed=1), result(1.0, seed=2), threshold=0.2).verdict is Verdict.PASS


def test_different_hardware_refused_unless_forced(cfg) -> None:
    new, old = result(1.0, seed=1), result(1.0, seed=2, cpu="Other CPU")
    with pytest.raises(UsageError, match="different hardware.*--force"):
        compare(cfg, new, old)
    assert compare(cfg, new, old, force=True).verdict is Verdict.PASS


def test_one_round_baseline_is_marginal_on_the_effect(cfg) -> None:
    """A report from before rounds: no run-to-run noise to test against, so never a confident verdict."""
    res = compare(cfg, result(1.10, seed=1, rounds=1), result(1.0, seed=2, rounds=1))
    assert res.verdict is Verdict.MARGINAL and not res.passed and "1 round" in res.detail
    res = compare(cfg, result(1.0, seed=1, rounds=1), result(1.0, seed=2, rounds=1))
    assert res.verdict is Verdict.MARGINAL and res.passed
