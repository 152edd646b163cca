"""Import Ray only here, and connect the submitting process to the cluster once."""

from __future__ import annotations

import logging
from typing import Any

from edgeship.errors import MissingDependency, UsageError


def ray_module() -> Any:
    try:
        import ray
    except ImportError:
        raise MissingDependency("ray", "cluster", "the device lab (--cluster)") from None
    return ray


def connect(address: str) -> Any:
    """The ray module, connected to ``address`` (a no-op when this process already is)."""
    ray = ray_module()
    if ray.is_initialized():
        return ray
    try:
        # the nodes' own prints stay on the nodes: results come back through the tasks
        ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING, namespace="edgeship")
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise UsageError(f"--cluster {address}: cannot reach the Ray cluster ({str(exc).splitlines()[0]}); start its "
                         "head with 'ray start --head' (see docs/cluster.md)") from None
    return ray


def advertised(ray: Any) -> dict[str, dict[str, str]]:
    """device name -> {"id", "ip", "host"} of the alive node that advertises it."""
    from edgeship.cluster import RESOURCE_PREFIX

    out: dict[str, dict[str, str]] = {}
    for node in ray.nodes():
        if not node.get("Alive"):
            continue
        for key in node.get("Resources") or {}:
            if key.startswith(RESOURCE_PREFIX):
                out[key[len(RESOURCE_PREFIX):]] = {"id": node["NodeID"], "ip": node["NodeManagerAddress"],
                                                   "host": node.get("NodeManagerHostname", "")}
    return out
