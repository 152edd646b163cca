"""Budget expansion on synthetic results: wildcards, device filter, config errors (exit 2)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from edgeship.budgets import expand
from edgeship.errors import ConfigError
from tests.conftest import make_config

ARTIFACTS = ["onnx-fp32", "onnx-int8", "tflite-int8", "coreml-fp16"]


def result(device: str, artifact: str) -> dict[str, Any]:
    return {"device": {"name": device}, "artifact": {"name": artifact}, "status": "ok"}


RESULTS = [result("local", a) for a in ARTIFACTS]


def checks(tmp: Path, *budgets: dict[str, Any], results=RESULTS, device: str | None = None):
    cfg = make_config(tmp, budgets=list(budgets))
    return expand(cfg, results, ARTIFACTS, device)


def test_wildcards_expand_to_one_check_per_artifact_and_metric(tmp_path: Path) -> None:
    got = checks(tmp_path, {"device": "*", "target": "*", "precision": "int8", "latency_ms": {"p90": 2.0}, "size_kb": 100})
    names = sorted(c.name for c in got)
    assert names == sorted([
        "local.onnx-int8.latency_p90_ms", "local.tflite-int8.latency_p90_ms",
        "*.onnx-int8.size_kb", "*.tflite-int8.size_kb",
    ])
    lat = [c for c in got if c.statistic == "p90"]
    assert all(c.limit == 2.0 and c.budget == 0 for c in lat)


def test_every_latency_statistic_and_require(tmp_path: Path) -> None:
    got = checks(tmp_path, {"device": "local", "target": "onnx", "precision": "fp32", "require": True,
                            "latency_ms": {"p50": 1.0, "p99": 3.0, "mean": 1.5}, "peak_memory_mb": 50})
    assert sorted(c.metric for c in got) == ["latency_mean_ms", "latency_p50_ms", "latency_p99_ms", "peak_memory_mb"]
    assert all(c.require and c.artifact == "onnx-fp32" for c in got)


def test_device_filter_keeps_artifact_limits(tmp_path: Path) -> None:
    got = checks(tmp_path, {"device": "local", "target": "onnx", "precision": "fp32", "latency_ms": {"p90": 1.0}, "size_kb": 10},
                 device="board")
    assert [c.metric for c in got] == ["size_kb"]


def test_unknown_device_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"\[\[budgets\]\] #1 .*unknown device 'rpi5'"):
        checks(tmp_path, {"device": "rpi5", "latency_ms": {"p90": 1.0}})
    assert ConfigError.exit_code == 2


def test_budget_matching_nothing_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"#2 .*matches no exported artifact \(have: onnx-fp32, onnx-int8"):
        checks(tmp_path, {"size_kb": 100}, {"target": "tflite", "precision": "fp16", "size_kb": 100})


def test_latency_budget_without_results_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no profile results.*edgeship profile"):
        checks(tmp_path, {"target": "onnx", "latency_ms": {"p90": 1.0}}, results=[])


def test_budget_with_no_limit_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="sets no limit"):
        checks(tmp_path, {"target": "onnx"})
