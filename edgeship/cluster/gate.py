"""gate --cluster: profile every budgeted device on its node, then judge as usual.

A device that fails (its check, its node dying, not advertised) has no fresh result; its
earlier results are left on disk (evidence is only replaced by newer complete evidence), and
the gate is told the device failed in this run, so it FAILs its latency/memory checks naming
the error and the command to re-run: those rows are never dropped, nor judged on the old result. Extra rounds (when a confidence interval straddles a budget)
are tasks on the device's node too.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from fnmatch import fnmatchcase
from typing import Any

from edgeship.config import Config


def _device_budgets(cfg: Config) -> list[Any]:
    return [b for b in cfg.budgets
            if b.latency_ms is not None or b.peak_memory_mb is not None or b.min_speedup_vs_fp32 is not None]


def lab_devices(cfg: Config, only: str | None) -> list[str]:
    """Configured devices a latency or memory budget names (``only``: that one)."""
    from edgeship.gating.budgets import budget_devices

    out: list[str] = []
    for b in _device_budgets(cfg):
        out += [d for d in budget_devices(cfg, b) if only is None or d == only]
    return list(dict.fromkeys(out))


def judged(cfg: Config, device: str, ref: Any) -> bool:
    """Does a latency/memory/speed-up budget judge this artifact on this device? The FP32 build
    of a target with a ``min_speedup_vs_fp32`` budget is, too: it is measured in the same task,
    its rounds interleaved with the INT8 ones (gate/speedup.py)."""
    def precision(b: Any) -> bool:
        return fnmatchcase(ref.manifest.precision, b.precision) or (
            b.min_speedup_vs_fp32 is not None and ref.manifest.precision == "fp32")

    return any(fnmatchcase(device, b.device) and fnmatchcase(ref.manifest.target, b.target) and precision(b)
               for b in _device_budgets(cfg))


def profile_lab(cfg: Config, address: str, only: str | None, say: Callable[[str], None]) -> dict[str, str]:
    """Profile the budgeted devices on the cluster; returns device -> error line of those that
    failed (also on stderr), for ``gate(unmeasured=...)``."""
    from edgeship.cluster.submit import ClusterRunError, profile_on_cluster

    devices = lab_devices(cfg, only)
    if not devices:
        return {}
    try:
        profile_on_cluster(cfg, address, devices, None, None, say,
                           wanted=lambda d, r: judged(cfg, d, r))
    except ClusterRunError as exc:
        for line in exc.errors:
            print(f"edgeship: error: {line}", file=sys.stderr)
        return exc.failed
    return {}


def lab_remeasure(cfg: Config, address: str) -> Any:
    from edgeship.cluster.submit import remeasure_on_cluster

    return remeasure_on_cluster(cfg, address)
