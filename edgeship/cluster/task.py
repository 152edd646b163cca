"""What runs on the node that owns a device: unpack the artifacts, open the device with the
node's own configuration, measure the rounds, return the results (the node writes nothing).

A failure is returned, not raised, as ``{"step", "message"}`` so the submitter can name the
device, the node and the step in one line; a dying node is Ray's error on the submitter.
"""

from __future__ import annotations

import os
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

from edgeship.errors import EdgeshipError


def run_device(job: dict[str, Any], *payloads: dict[str, Any]) -> dict[str, Any]:
    """``job``: device, cfg (the submitter's), inputs, reference outputs, round options.
    ``payloads``: the artifacts (Ray resolves top-level object refs, fetching them here)."""
    return on_node(job, payloads, _measure)


def on_node(job: dict[str, Any], payloads: tuple[dict[str, Any], ...], work: Any) -> dict[str, Any]:
    """Config, artifacts, then ``work(cfg, job, refs, say, out)``; a failure is returned, not raised."""
    out: dict[str, Any] = {"device": job["device"], "host": socket.gethostname(), "started": time.time(),
                           "results": [], "error": None}
    step = "config"
    try:
        cfg = _node_config(job)
        with tempfile.TemporaryDirectory(prefix="edgeship-lab-") as tmp:
            from edgeship.cluster.transport import unpack

            refs = []
            for p in payloads:
                step = f"receive artifact {p['name']}"
                refs.append(unpack(p, Path(tmp), cfg.model.name))
            out["results"] = work(cfg, job, refs, lambda s: None, out)
    except EdgeshipError as exc:
        out["error"] = {"step": out.get("step", step), "message": str(exc)}
    except Exception as exc:  # noqa: BLE001  (a bug or a foreign error: still one line for this device)
        out["error"] = {"step": out.get("step", step), "message": f"{type(exc).__name__}: {exc}"}
    out["finished"] = time.time()
    return out


def _node_config(job: dict[str, Any]) -> Any:
    """The submitter's config with this node's table of the device (its ssh keys, its adb)."""
    from edgeship import __version__
    from edgeship.config import load_config
    from edgeship.errors import ConfigError

    if job["version"] != __version__:
        raise ConfigError(f"edgeship {__version__} on this node, {job['version']} on the submitter; install the same "
                          "version on both")
    path = os.environ.get("EDGESHIP_NODE_CONFIG")
    if not path:
        raise ConfigError("this node was not started by 'edgeship worker' (no EDGESHIP_NODE_CONFIG): it has no device "
                          "configuration")
    node = load_config(path)
    device = job["device"]
    if device not in node.devices:
        raise ConfigError(f"{path} has no [devices.{device}] although this node advertises it; restart its worker")
    cfg = job["cfg"]
    return cfg.model_copy(update={"devices": {device: node.devices[device]}})


def _measure(cfg: Any, job: dict[str, Any], refs: list[Any], say: Any, out: dict[str, Any]) -> list[dict[str, Any]]:
    from edgeship.devices.base import open_device
    from edgeship.measure.profile import Reference, measure_rounds

    reference = None
    if job.get("reference") is not None:
        reference = Reference.restore(cfg, job["inputs"], job["reference"])   # computed once, on the submitter

    def track(line: str) -> None:
        if line.startswith("profile "):
            out["step"] = line.removesuffix(" ...")

    out["step"] = "open device"
    with open_device(job["device"], cfg) as dev:
        results = measure_rounds(cfg, dev, refs, job["inputs"], reference, track, lambda _n, _r: None,
                                 job.get("min_runs"), job.get("min_seconds"), job.get("threads"), job.get("rounds"))
    out.pop("step", None)
    return results
