"""eval --device NAME --cluster: the evaluation set through the runner on the device's node.

The node runs device_eval's chunked push/run/pull loop with its own device table and returns
the raw outputs; the FP32 reference and the scoring stay on the submitter (like the
in-process ``eval --device``), so the node needs neither torch nor the data set.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgeship.config import Config
from edgeship.errors import DeviceError


@dataclass(frozen=True)
class _Sample:
    inputs: dict[str, np.ndarray]


@dataclass(frozen=True)
class _Samples:
    """What device_eval's chunk loop reads of a Scorer: the samples' inputs."""
    samples: list[_Sample]


def evaluate_on_cluster(cfg: Config, address: str, device: str, refs: list[Any], scorer: Any, chunk: int,
                        say: Callable[[str], None]) -> Iterator[dict[str, Any]]:
    """Yield one eval entry per artifact (device_eval.evaluate_on_device's contract)."""
    from edgeship.cluster.connect import connect
    from edgeship.cluster.submit import run_tasks
    from edgeship.measure.scoring import cpu_block, new_entry

    ray = connect(address, cfg)
    opts = {"samples": _Samples([_Sample(s.inputs) for s in scorer.samples]), "chunk": chunk}
    o = run_tasks(ray, cfg, {device: refs}, opts, say, fn=eval_device)[device]
    got = {r["artifact"]: r for r in o["results"]}
    n = len(scorer.samples)
    for ref in refs:
        entry = new_entry(cfg, ref, device, n)
        r = got.get(ref.name)
        if r is None:       # the device failed at or before this artifact
            entry.update(status="error", skip_reason=o["error"] or "no result from the node")
            exc = DeviceError(o["error"] or f"device '{device}': no result for {ref.name}")
            exc.eval_entry = entry  # type: ignore[attr-defined]
            raise exc
        entry["cpu"] = cpu_block((r["env"] or {}).get("cpu"))
        if r["skipped"]:
            entry.update(status="skipped", skip_reason=r["skipped"])
            say(f"  {ref.name}: SKIPPED ({r['skipped']})")
        else:
            entry.update(scorer.score(r["outputs"], ref.manifest))
        yield entry


def eval_device(job: dict[str, Any], *payloads: dict[str, Any]) -> dict[str, Any]:
    from edgeship.cluster.task import on_node

    return on_node(job, payloads, _eval)


def _eval(cfg: Any, job: dict[str, Any], refs: list[Any], say: Any, out: dict[str, Any]) -> list[dict[str, Any]]:
    from edgeship.devices.base import open_device
    from edgeship.measure.evaluate_device import NO_OUTPUTS, _run_chunks

    out["step"] = "open device"
    dev = open_device(job["device"], cfg)
    results: list[dict[str, Any]] = []
    if getattr(type(dev), "profile_native", None) is not None:
        return [{"artifact": ref.name, "outputs": [], "env": {}, "skipped": f"{dev.kind} device: {NO_OUTPUTS}"}
                for ref in refs]
    with dev:
        for ref in refs:
            out["step"] = f"eval {ref.name}"
            outs, env, skipped = _run_chunks(cfg, dev, ref, job["samples"], job["chunk"], say)
            results.append({"artifact": ref.name, "outputs": outs, "env": env, "skipped": skipped})
    out.pop("step", None)
    return results
