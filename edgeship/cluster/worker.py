"""``edgeship worker``: check this host's devices, then join the Ray cluster advertising them.

Design: a thin wrapper over ``ray start --address ADDRESS --resources '{...}' --block`` (an
argv, no shell). The node is a plain Ray node the lab already knows how to run and stop;
the devices are its custom resources (capacity 1 each, the exclusivity lock), and the
environment variable NODE_CONFIG_ENV tells the node's task processes which edgeship.toml
holds the devices' tables. A device that fails ``devices check`` is never advertised: the
worker refuses to start, naming it.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

from edgeship.config import Config
from edgeship.errors import UsageError


def check_devices(cfg: Config, devices: list[str]) -> None:
    """UsageError naming the first device that is not configured or fails its check."""
    from edgeship.devices.check import check

    for name in devices:
        if name not in cfg.devices:
            raise UsageError(f"worker --devices: '{name}' is not a [devices.NAME] of {cfg.path or 'edgeship.toml'} "
                             f"(configured: {', '.join(sorted(cfg.devices))})")
        r = check(cfg, name)
        if not r.usable:
            why = r.error or "; ".join(m for m in r.missing if m.startswith("required:")) or "no runtime available"
            raise UsageError(f"worker: device '{name}' fails 'edgeship devices check {name}' ({why}); not advertising "
                             "it: fix it or leave it out of --devices")


def ray_start_argv(address: str, devices: list[str], extra: list[str] | None = None) -> list[str]:
    from edgeship.cluster import device_resource

    ray = shutil.which("ray") or str(Path(sys.executable).with_name("ray"))
    resources = json.dumps({device_resource(d): 1 for d in devices})
    return [ray, "start", "--address", address, "--resources", resources, "--block", *(extra or [])]


def worker_env(cfg: Config) -> dict[str, str]:
    from edgeship.cluster import NODE_CONFIG_ENV

    if cfg.path is None:
        raise UsageError("worker: needs an edgeship.toml holding the devices' tables (-c PATH)")
    return {**os.environ, NODE_CONFIG_ENV: str(Path(cfg.path).resolve())}
