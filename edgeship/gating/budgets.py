"""Budgets: ``[[budgets]]`` entries expanded into one Check per (device, artifact, metric).

Expansion is driven by the budgets, the configured devices and the artifacts on disk, never
by which measurements happen to exist: a check without evidence is judged (FAIL, naming what
to re-run), not dropped. A budget naming an unknown device, or matching no artifact, is a
config error: a typo must never let a release gate pass vacuously.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from edgeship.config import BudgetConfig, Config
from edgeship.errors import ConfigError

LATENCY = "latency"
MEMORY = "peak_memory_mb"
SIZE = "size_kb"
ACCURACY = "accuracy_drop"
COSINE = "cosine_mean"
RETRIEVAL = "retrieval_agreement"
SPEEDUP = "speedup_vs_fp32"       # judged per device on paired FP32/INT8 rounds (gate/speedup.py)
EVAL_METRICS = (ACCURACY, COSINE, RETRIEVAL)     # judged on eval.json entries


@dataclass(frozen=True)
class Check:
    budget: int            # index into cfg.budgets (0-based)
    device: str            # a device name, or "*" for device-independent checks
    artifact: str          # the artifact's name (an opaque id; see evidence.judged_artifact)
    metric: str            # "latency_p90_ms", "peak_memory_mb", "size_kb", "accuracy_drop", "cosine_mean",
                           # "retrieval_agreement"
    limit: float
    require: bool = False
    target: str = ""       # of the artifact (from its manifest, or its directory name when broken)
    precision: str = ""
    relative_to: str = ""  # eval metrics: the budget's relative_to ("source" | "original"), in report.json

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
    if b.min_speedup_vs_fp32 is not None:
        dev.append((SPEEDUP, b.min_speedup_vs_fp32))
    art: list[tuple[str, float]] = []
    if b.size_kb is not None:
        art.append((SIZE, b.size_kb))
    if b.max_accuracy_drop is not None:
        art.append((ACCURACY, b.max_accuracy_drop))
    if b.min_cosine is not None:
        art.append((COSINE, b.min_cosine))
    if b.min_retrieval_agreement is not None:
        art.append((RETRIEVAL, b.min_retrieval_agreement))
    return dev, art


class Candidate(Protocol):
    """An artifact on disk, readable (selection.ArtifactRef) or not (selection.BrokenArtifact)."""

    @property
    def name(self) -> str: ...
    @property
    def target(self) -> str: ...
    @property
    def precision(self) -> str: ...


def budget_devices(cfg: Config, b: BudgetConfig) -> list[str]:
    """Configured devices (local included) a budget's ``device`` pattern names."""
    return [d for d in cfg.devices if fnmatch.fnmatchcase(d, b.device)]


def expand(cfg: Config, artifacts: Sequence[Candidate], only_device: str | None = None) -> list[Check]:
    """Checks for every budget x matching artifact (x device for device-bound metrics).

    ``artifacts`` are every artifact directory on disk, broken ones included. Device-bound
    limits (latency, memory) get one check per configured device the budget names (``*``: all
    of them) and per target/precision it matches, on the artifact judged there. Size gets one
    check per matching artifact; accuracy/cosine/retrieval one per matching artifact for ``device = "*"``
    (the gate then requires an eval entry of at least one device) and one per named device
    otherwise. With ``only_device`` (``gate --device``), only budgets whose ``device`` pattern
    names that device apply (``*`` does), device-independent limits included: gating one device
    judges what was promised for it, and nothing applying to it is a usage error (exit 2).
    """
    from edgeship.gating.evidence import judged_artifact

    checks: list[Check] = []
    for i, b in enumerate(cfg.budgets):
        where = f"{cfg.path or 'edgeship.toml'}: [[budgets]] #{i + 1} (device={b.device!r}, target={b.target!r}, precision={b.precision!r})"
        devices = budget_devices(cfg, b)
        if b.device != "*" and not devices:
            raise ConfigError(f"{where}: unknown device {b.device!r}; configured devices: {', '.join(sorted(cfg.devices))}")
        dev_metrics, art_metrics = _metrics(b)
        if not dev_metrics and not art_metrics:
            raise ConfigError(f"{where}: sets no limit (latency_ms, peak_memory_mb, size_kb, max_accuracy_drop, min_cosine, "
                              "min_retrieval_agreement, min_speedup_vs_fp32)")
        matching = [a for a in artifacts if _matches(b, str(a.target), str(a.precision))]
        if not matching:
            have = ", ".join(a.name for a in artifacts) or "none"
            raise ConfigError(f"{where}: matches no configured or exported artifact (have: {have}); "
                              "fix the budget or run 'edgeship export'")
        if only_device is not None and not fnmatch.fnmatchcase(only_device, b.device):
            continue     # validated above like every budget, but it promises nothing for this device
        pairs = list(dict.fromkeys((str(a.target), str(a.precision)) for a in matching))
        if any(m == SPEEDUP for m, _ in dev_metrics) and all(p == "fp32" for _, p in pairs):
            raise ConfigError(f"{where}: min_speedup_vs_fp32 compares a precision with FP32, but the budget matches only "
                              "fp32 artifacts; set precision = \"int8\" (or another one)")

        for metric, limit in art_metrics:
            rel = b.relative_to if metric in EVAL_METRICS else ""
            if metric == SIZE or b.device == "*":
                checks += [Check(i, "*", a.name, metric, limit, b.require, str(a.target), str(a.precision), rel)
                           for a in matching]
            else:
                checks += [Check(i, d, judged_artifact(cfg, d, t, p), metric, limit, b.require, t, p, rel)
                           for d in devices for t, p in pairs]
        for d in devices:
            if only_device is not None and d != only_device:
                continue
            for t, p in pairs:
                # the speed-up of FP32 over itself is 1 by definition: not a check
                checks += [Check(i, d, judged_artifact(cfg, d, t, p), metric, limit, b.require, t, p) for metric, limit in dev_metrics
                           if not (metric == SPEEDUP and p == "fp32")]
    return checks
