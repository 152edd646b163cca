"""Budgets: ``[[budgets]]`` entries expanded into one Check per (device, artifact, metric).

A budget naming an unknown device, or matching no artifact, is a config error: a typo must
never let a release gate pass vacuously.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from edgeship.config import BudgetConfig, Config
from edgeship.errors import ConfigError

LATENCY = "latency"
MEMORY = "peak_memory_mb"
SIZE = "size_kb"
ACCURACY = "accuracy_drop"
COSINE = "cosine_mean"


@dataclass(frozen=True)
class Check:
    budget: int            # index into cfg.budgets (0-based)
    device: str            # a device name, or "*" for device-independent checks
    artifact: str          # "<target>-<precision>"
    metric: str            # "latency_p90_ms", "peak_memory_mb", "size_kb", "accuracy_drop", "cosine_mean"
    limit: float
    require: bool = False

    @property
    def statistic(self) -> str | None:
        return self.metric.split("_")[1] if self.metric.startswith("latency_") else None

    @property
    def name(self) -> str:
        return f"{self.device}.{self.artifact}.{self.metric}"


def _matches(b: BudgetConfig, target: str, precision: str) -> bool:
    return fnmatch.fnmatchcase(target, b.target) and fnmatch.fnmatchcase(precision, b.precision)


def _metrics(b: BudgetConfig) -> tuple[list[tuple[str, float]], list[tuple[str, float]]]:
    """(device-dependent metrics, device-independent metrics) of a budget."""
    dev: list[tuple[str, float]] = []
    if b.latency_ms is not None:
        for stat in ("p50", "p90", "p99", "mean"):
            v = getattr(b.latency_ms, stat)
            if v is not None:
                dev.append((f"latency_{stat}_ms", v))
    if b.peak_memory_mb is not None:
        dev.append((MEMORY, b.peak_memory_mb))
    art: list[tuple[str, float]] = []
    if b.size_kb is not None:
        art.append((SIZE, b.size_kb))
    if b.max_accuracy_drop is not None:
        art.append((ACCURACY, b.max_accuracy_drop))
    if b.min_cosine is not None:
        art.append((COSINE, b.min_cosine))
    return dev, art


def expand(cfg: Config, results: Sequence[dict[str, Any]], artifacts: Sequence[str],
           only_device: str | None = None) -> list[Check]:
    """Checks for every budget; ``artifacts`` are the exported "<target>-<precision>" names.

    With ``only_device`` (``gate --device``), device-bound limits of budgets for other
    devices are left out; device-independent limits (size, accuracy) always apply.
    """
    checks: list[Check] = []
    for i, b in enumerate(cfg.budgets):
        where = f"{cfg.path or 'edgeship.toml'}: [[budgets]] #{i + 1} (device={b.device!r}, target={b.target!r}, precision={b.precision!r})"
        if b.device != "*" and not any(fnmatch.fnmatchcase(d, b.device) for d in cfg.devices):
            raise ConfigError(f"{where}: unknown device {b.device!r}; configured devices: {', '.join(sorted(cfg.devices))}")
        dev_metrics, art_metrics = _metrics(b)
        if not dev_metrics and not art_metrics:
            raise ConfigError(f"{where}: sets no limit (latency_ms, peak_memory_mb, size_kb, max_accuracy_drop, min_cosine)")
        names = [a for a in artifacts if _matches(b, *a.split("-", 1))]
        if not names:
            raise ConfigError(f"{where}: matches no exported artifact (have: {', '.join(artifacts) or 'none'}); fix the budget or run 'edgeship export'")
        for name in names:
            for metric, limit in art_metrics:
                checks.append(Check(i, "*", name, metric, limit, b.require))
        if not dev_metrics or (only_device is not None and not fnmatch.fnmatchcase(only_device, b.device)):
            continue
        hits = [
            r for r in results
            if fnmatch.fnmatchcase(r["device"]["name"], b.device) and r["artifact"]["name"] in names
        ]
        if not hits:
            raise ConfigError(
                f"{where}: no profile results for it; run 'edgeship profile --device "
                f"{b.device if b.device != '*' else 'local'}' first"
            )
        for r in hits:
            for metric, limit in dev_metrics:
                checks.append(Check(i, r["device"]["name"], r["artifact"]["name"], metric, limit, b.require))
    return checks
