"""The submitting side: one Ray task per device, results written here only (one writer).

A device's failure is one error naming the device, its node and the step; a node that dies
or leaves mid-run is the same error for its devices (the tasks never retry: a measurement is
not silently repeated elsewhere). Ctrl-C cancels every submitted task.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from edgeship.config import Config
from edgeship.errors import DeviceError
from edgeship.types import Precision, Target

POLL_S = 1.0    # how often a waiting submitter checks that the devices' nodes are still there


class ClusterRunError(DeviceError):
    """Some devices failed on the cluster; the others' results are written."""

    def __init__(self, errors: list[str], results: list[dict[str, Any]], failed: dict[str, str] | None = None) -> None:
        super().__init__("; ".join(errors))
        self.errors, self.results = errors, results
        self.failed = failed or {}    # device -> its error line (its earlier results are left as they were)


def profile_on_cluster(cfg: Config, address: str, devices: list[str], targets: tuple[Target, ...] | None,
                       precisions: tuple[Precision, ...] | None, on_event: Callable[[str], None] | None = None,
                       min_runs: int | None = None, min_seconds: float | None = None, threads: int | None = None,
                       rounds: int | None = None,
                       wanted: Callable[[str, Any], bool] | None = None) -> list[dict[str, Any]]:
    """profile() on the devices' own nodes; raises ClusterRunError after writing the rest.

    ``wanted(device, ref)`` narrows the artifacts per device (gate: those a budget judges there).
    """
    from edgeship.artifact.atomic import write_json_atomic
    from edgeship.artifact.selection import find_artifacts, pick_for_class
    from edgeship.cluster.connect import connect
    from edgeship.measure.inputs import profiling_inputs
    from edgeship.measure.profile import Reference, result_path

    say = on_event or (lambda _m: None)
    found = find_artifacts(cfg, targets, precisions)
    inputs = profiling_inputs(cfg)
    ray = connect(address, cfg)
    # a remote device's CPU class is only known when declared (this host's is not the node's)
    per_device = {d: [r for r in pick_for_class(found, _declared_class(cfg, d)) if wanted is None or wanted(d, r)]
                  for d in devices}
    # nothing is deleted first: a failed device's earlier results stay, and the gate is told it
    # failed (ClusterRunError.failed) so they are not judged as this run's measurement
    # each artifact's FP32 source (original or compressed), computed here: the nodes need no torch
    reference = Reference(cfg, inputs).snapshot([r for refs in per_device.values() for r in refs])
    opts = {"inputs": inputs, "reference": reference, "min_runs": min_runs,
            "min_seconds": min_seconds, "threads": threads, "rounds": rounds}
    outcomes = run_tasks(ray, cfg, per_device, opts, say)
    results, errors, failed = [], [], {}
    for d in devices:
        o = outcomes[d]
        if o["error"] is not None:
            errors.append(o["error"])
            failed[d] = o["error"]
            continue
        for r in o["results"]:
            r["device"]["node"] = o["node"]
            write_json_atomic(result_path(cfg, d, r["artifact"]["name"]), r)
            results.append(r)
    if errors:
        raise ClusterRunError(errors, results, failed)
    return results


def run_tasks(ray: Any, cfg: Config, per_device: dict[str, list[Any]], opts: dict[str, Any],
              say: Callable[[str], None], submitted: list[Any] | None = None,
              fn: Callable[..., dict[str, Any]] | None = None) -> dict[str, dict[str, Any]]:
    """Submit one task per device, wait for all; device -> {"results", "node", "error" (a line or None)}.

    ``submitted`` collects the tasks' object refs (for a caller that watches them); ``fn`` is
    the node-side function (default: task.run_device, the profile rounds).
    """
    from edgeship import __version__
    from edgeship.cluster import device_resource
    from edgeship.cluster.connect import advertised
    from edgeship.cluster.task import run_device
    from edgeship.cluster.transport import pack

    nodes = advertised(ray)
    outcomes: dict[str, dict[str, Any]] = {}
    shipped: dict[str, Any] = {}          # each artifact goes into the object store once
    # num_cpus=0: the device resource is the lock; max_retries=0: a measurement never silently reruns
    remote = ray.remote(num_cpus=0, max_retries=0, retry_exceptions=False)(fn or run_device)
    pending: dict[Any, str] = {}
    for device, refs in per_device.items():
        node = nodes.get(device)
        if node is None:
            outcomes[device] = _failed(device, None, "submit", "no node of the cluster advertises this device; start "
                                       f"'edgeship worker --devices {device}' on the host it is attached to")
            say(f"device {device}: ERROR (not advertised)")
            continue
        payloads = []
        for ref in refs:
            if ref.name not in shipped:
                shipped[ref.name] = ray.put(pack(ref))
            payloads.append(shipped[ref.name])
        job = {"device": device, "cfg": cfg, "version": __version__, **opts}
        task = remote.options(resources={device_resource(device): 1}, name=f"edgeship:{device}")
        pending[task.remote(job, *payloads)] = device
        if submitted is not None:
            submitted.append(next(reversed(pending)))
        outcomes[device] = {"node": node, "results": [], "error": None}
        say(f"device {device}: submitted to node {_where(node)} ({len(refs)} artifacts)")
    try:
        _wait(ray, pending, outcomes, say)
    except KeyboardInterrupt:
        for ref in pending:
            ray.cancel(ref, force=True)
        raise
    return outcomes


def _wait(ray: Any, pending: dict[Any, str], outcomes: dict[str, dict[str, Any]], say: Callable[[str], None]) -> None:
    from edgeship.cluster.connect import advertised

    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1, timeout=POLL_S)
        for ref in ready:
            device = pending.pop(ref)
            o = outcomes[device]
            try:
                got = ray.get(ref)
            except ray.exceptions.RayError as exc:    # the node died, the worker crashed, cancelled
                o["error"] = _line(device, o["node"], "run", _ray_reason(exc))
                say(f"device {device}: ERROR on node {_where(o['node'])}")
                continue
            o["node"] = {**o["node"], "host": got.get("host", o["node"].get("host", ""))}
            if got["error"] is not None:
                o["error"] = _line(device, o["node"], got["error"]["step"], got["error"]["message"])
                say(f"device {device}: ERROR on node {_where(o['node'])} at {got['error']['step']}")
                continue
            o["results"], o["started"], o["finished"] = got["results"], got["started"], got["finished"]
            say(f"device {device}: done on node {_where(o['node'])} ({len(got['results'])} results, "
                f"{got['finished'] - got['started']:.1f} s)")
        if pending and not ready:
            # a node that left before running the task makes it infeasible: Ray would wait forever
            alive = advertised(ray)
            for ref, device in list(pending.items()):
                if device not in alive:
                    ray.cancel(ref, force=True)
                    del pending[ref]
                    o = outcomes[device]
                    o["error"] = _line(device, o["node"], "run", "its node left the cluster")
                    say(f"device {device}: ERROR (node left)")


def _failed(device: str, node: dict[str, str] | None, step: str, msg: str) -> dict[str, Any]:
    return {"node": node, "results": [], "error": _line(device, node, step, msg)}


def _line(device: str, node: dict[str, str] | None, step: str, msg: str) -> str:
    where = f"on node {_where(node)}" if node else "on no node"
    return f"device '{device}' {where}, step '{step}': {msg}"


def _where(node: dict[str, str] | None) -> str:
    if not node:
        return "?"
    return f"{node['ip']} ({node['id'][:8]})"


def _ray_reason(exc: BaseException) -> str:
    name = type(exc).__name__
    reasons = {"NodeDiedError": "the node died during the run", "WorkerCrashedError": "the Ray worker crashed",
               "TaskCancelledError": "cancelled", "OwnerDiedError": "the submitter's object owner died"}
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{reasons.get(name, name)} ({name}{': ' + first[:200] if first else ''})"


def _declared_class(cfg: Config, device: str) -> str | None:
    d = cfg.devices.get(device)
    return d.cpu_class if d is not None else None


def remeasure_on_cluster(cfg: Config, address: str) -> Callable[[str, str], list[int]]:
    """gate's extra rounds, each one task on the device's node (so still exclusive)."""
    from edgeship.artifact.selection import scan_artifacts
    from edgeship.cluster.connect import connect
    from edgeship.measure.inputs import profiling_inputs

    def remeasure(device: str, artifact: str) -> list[int]:
        ray = connect(address, cfg)
        ref = next(r for r in scan_artifacts(cfg)[0] if r.name == artifact)
        opts = {"inputs": profiling_inputs(cfg), "reference": None, "min_runs": None, "min_seconds": None,
                "threads": None, "rounds": 1}
        o = run_tasks(ray, cfg, {device: [ref]}, opts, lambda _m: None)[device]
        if o["error"] is not None:
            raise DeviceError(o["error"])
        return list((o["results"][0].get("timing") or {}).get("samples_ns") or [])

    return remeasure
