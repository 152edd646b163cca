"""Baseline comparison on synthetic results: effect size AND significance, same hardware only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgeship.baseline import compare_baseline
from edgeship.errors import UsageError
from edgeship.types import Verdict
from tests.conftest import make_config


def result(median_ms: float, seed: int, n: int = 200, cpu: str = "Fake CPU @ 3GHz") -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    ms = median_ms * (1 + 0.03 * rng.standard_normal(n))
    return {"device": {"name": "local"}, "artifact": {"name": "onnx-fp32"}, "status": "ok",
            "env": {"cpu": cpu, "machine": "x86_64", "cpu_count": 2},
            "runtime": {"name": "onnxruntime", "version": "1.32.0", "threads": 1},
            "timing": {"samples_ns": [int(v * 1e6) for v in ms]}}


@pytest.fixture
def cfg(tmp_path: Path):
    return make_config(tmp_path)


def compare(cfg, new: dict[str, Any], old: dict[str, Any], **kw: Any):
    (out,) = compare_baseline(cfg, [new], {"results": [old]}, **kw)
    return out


def test_ten_percent_shift_on_200_samples_is_a_regression(cfg) -> None:
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
