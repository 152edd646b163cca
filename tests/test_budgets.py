"""Budget expansion over the artifacts on disk: wildcards, devices, device filter, config errors (exit 2)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from edgeship.errors import ConfigError
from edgeship.gating.budgets import expand
from tests.conftest import make_config


@dataclass(frozen=True)
class Art:
    """Stands in for an artifact on disk (selection.ArtifactRef / BrokenArtifact)."""

    target: str
    precision: str

    @property
    def name(self) -> str:
        return f"{self.target}-{self.precision}"


ARTIFACTS = [Art("onnx", "fp32"), Art("onnx", "int8"), Art("tflite", "int8"), Art("coreml", "fp16")]


def checks(tmp: Path, *budgets: dict[str, Any], device: str | None = None, **overrides: Any):
    cfg = make_config(tmp, budgets=list(budgets), **overrides)
    return expand(cfg, ARTIFACTS, device)


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


def test_device_filter_judges_only_the_budgets_that_name_the_device(tmp_path: Path) -> None:
    board = {"board": {"kind": "ssh", "host": "pi@board"}}
    local_only = {"device": "local", "target": "onnx", "precision": "fp32", "latency_ms": {"p90": 1.0}, "size_kb": 10}
    assert checks(tmp_path, local_only, devices=board, device="board") == []     # gate exits 2 on this
    got = checks(tmp_path, local_only, {"device": "*", "target": "onnx", "precision": "fp32", "size_kb": 20},
                 devices=board, device="board")
    assert [(c.budget, c.metric) for c in got] == [(1, "size_kb")]


def test_unknown_device_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"\[\[budgets\]\] #1 .*unknown device 'rpi5'"):
        checks(tmp_path, {"device": "rpi5", "latency_ms": {"p90": 1.0}})
    assert ConfigError.exit_code == 2


def test_budget_matching_nothing_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"#2 .*matches no configured or exported artifact \(have: onnx-fp32, onnx-int8"):
        checks(tmp_path, {"size_kb": 100}, {"target": "tflite", "precision": "fp16", "size_kb": 100})


def test_checks_come_from_budgets_and_devices_not_from_results(tmp_path: Path) -> None:
    """No results are consulted: "*" names every configured device, local included."""
    board = {"board": {"kind": "ssh", "host": "pi@board"}}
    got = checks(tmp_path, {"target": "onnx", "precision": "int8", "latency_ms": {"p90": 1.0}}, devices=board)
    assert sorted(c.name for c in got) == ["board.onnx-int8.latency_p90_ms", "local.onnx-int8.latency_p90_ms"]
    assert all((c.target, c.precision) == ("onnx", "int8") for c in got)


def test_accuracy_per_named_device_and_any_device_for_star(tmp_path: Path) -> None:
    board = {"board": {"kind": "ssh", "host": "pi@board"}}
    got = checks(tmp_path, {"device": "board", "target": "tflite", "precision": "int8", "min_cosine": 0.99},
                 {"target": "tflite", "precision": "int8", "max_accuracy_drop": 0.01}, devices=board)
    assert sorted(c.name for c in got) == ["*.tflite-int8.accuracy_drop", "board.tflite-int8.cosine_mean"]
    only_local = checks(tmp_path, {"device": "board", "target": "tflite", "precision": "int8", "min_cosine": 0.99},
                        {"target": "tflite", "precision": "int8", "max_accuracy_drop": 0.01}, devices=board, device="local")
    assert [c.name for c in only_local] == ["*.tflite-int8.accuracy_drop"]


def test_budget_with_no_limit_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="sets no limit"):
        checks(tmp_path, {"target": "onnx"})
