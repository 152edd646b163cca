"""profile --ops: per-op latency on the device, from the runtime's own profiler.

A separate runner process after the latency rounds (``runner --op-profile``): profiling slows
the runs it observes, so those runs never become latency samples. The runner summarises the
profiler's events on the device (p50/p90 per node and per op type over the measured runs) and
only that small JSON comes back. It lands in ``build/results/<device>/ops/<artifact>.json``
(schema ``edgeship.ops/1``), beside, never among, the latency results: the gate reads
``results/<device>/*.json`` only and never this folder.

The sum of the per-op medians is set against the latency rounds' median: what the kernels do
not account for is time the runtime spends outside them (binding inputs and outputs, moving
between nodes), which the output states whenever it is more than ``COVERAGE_TOLERANCE``. The
profiled runs' own median against the rounds' median is the profiler's overhead.
"""

from __future__ import annotations

import datetime as _dt
import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgeship.artifact.atomic import write_json_atomic
from edgeship.artifact.bundle import build_bundle
from edgeship.artifact.manifest import artifact_digest
from edgeship.artifact.selection import ArtifactRef, find_artifacts, pick_for_class, scan_artifacts
from edgeship.config import Config
from edgeship.devices.base import Device, open_device
from edgeship.devices.boards import EMULATED_TIMING
from edgeship.errors import DeviceError
from edgeship.measure.inputs import profiling_inputs
from edgeship.measure.profile import known_device_class, result_path, runner_argv, runner_failure
from edgeship.types import Precision, Target

OPS_SCHEMA = "edgeship.ops/1"
COVERAGE_TOLERANCE = 0.15
DEFAULT_RUNS = 100


def ops_path(cfg: Config, device: str, artifact: str) -> Path:
    return cfg.build / "results" / device / "ops" / f"{artifact}.json"


def profile_ops(cfg: Config, device: str = "local", targets: tuple[Target, ...] | None = None,
                precisions: tuple[Precision, ...] | None = None, on_event: Callable[[str], None] | None = None,
                runs: int = DEFAULT_RUNS, threads: int | None = None) -> list[dict[str, Any]]:
    """One op-profiling run per matching artifact on ``device``; written to results/<device>/ops/."""
    say = on_event or (lambda _m: None)
    refs = pick_for_class(find_artifacts(cfg, targets, precisions), known_device_class(cfg, device))
    inputs = profiling_inputs(cfg)
    for ref in refs:                # a stale op profile must not stand in for one that fails now
        ops_path(cfg, device, ref.name).unlink(missing_ok=True)
    out = []
    with open_device(device, cfg) as dev:
        for ref in refs:
            say(f"op profile {ref.name} on {device} ...")
            result = op_profile_artifact(cfg, dev, ref, inputs, runs, threads)
            write_json_atomic(ops_path(cfg, device, ref.name), result)
            out.append(result)
    return out


def op_profile_artifact(cfg: Config, dev: Device, ref: ArtifactRef, inputs: dict[str, Any],
                        runs: int = DEFAULT_RUNS, threads: int | None = None) -> dict[str, Any]:
    """The op profile of one artifact on an open device, with the latency it is set against."""
    digest = artifact_digest(ref.path)
    where = f"device '{dev.name}', artifact {ref.name}"
    if getattr(dev, "profile_native", None) is not None:
        result: dict[str, Any] = {
            "schema": OPS_SCHEMA, "status": "unreported", "runtime": {"name": ref.manifest.runtime},
            "skip_reason": f"{dev.kind} devices run the vendor's benchmark tool, whose per-op table edgeship does not "
                           "read yet (LiteRT: benchmark_model --enable_op_profiling=true prints it)"}
        return _finish(cfg, result, dev, ref, digest)
    with tempfile.TemporaryDirectory(prefix="edgeship-ops-") as tmp:
        remote = dev.push(build_bundle(Path(tmp) / "bundle", ref, inputs), f"ops-{ref.name}")
        argv = runner_argv(dev, remote, ref, cfg, min_runs=runs, min_seconds=0.0, threads=threads) + ["--op-profile"]
        try:
            run = dev.run(argv, timeout=cfg.profile.timeout_s, cwd=remote)
        except DeviceError as exc:
            raise DeviceError(f"{where}: op profile: {str(exc).removeprefix(f'device {dev.name!r}: ')}") from None
        if run.returncode != 0:
            raise runner_failure(run.returncode, run.stderr, f"{where}: op profile", remote, ref,
                                 "the profiling inputs come from [data] and [model] inputs of edgeship.toml")
        pulled = Path(tmp) / "ops.json"
        dev.pull(f"{remote}/result.json", pulled)
        try:
            result = json.loads(pulled.read_text())
        except ValueError as exc:
            raise DeviceError(f"{where}: op profile: unreadable result ({exc})") from None
    if not isinstance(result, dict) or result.get("schema") != OPS_SCHEMA or \
            result.get("status") not in ("ok", "skipped", "unreported"):
        raise DeviceError(f"{where}: op profile: not an {OPS_SCHEMA} result; is the runner on the device current?")
    if result["status"] == "ok" and not isinstance(result.get("ops"), list):
        raise DeviceError(f"{where}: op profile: the runner returned no ops")
    return _finish(cfg, result, dev, ref, digest)


def _finish(cfg: Config, result: dict[str, Any], dev: Device, ref: ArtifactRef, digest: str) -> dict[str, Any]:
    result["device"] = {"name": dev.name, "kind": dev.kind}
    if getattr(dev, "emulated", False):
        result["device"]["emulated"] = True
        result["times_skipped"] = EMULATED_TIMING
    result["artifact"] = {"name": ref.name, "model": ref.manifest.model, "target": ref.manifest.target,
                          "precision": ref.manifest.precision, "runtime": ref.manifest.runtime,
                          "artifact_digest": digest}
    result["config_digest"] = cfg.digest
    result["created"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds")
    if result["status"] == "ok" and "times_skipped" not in result:
        result["latency"] = _against_latency(cfg, dev.name, ref.name, digest, result)
    return result


def _against_latency(cfg: Config, device: str, artifact: str, digest: str, ops: dict[str, Any]) -> dict[str, Any]:
    """Per-op sum and the profiled runs against the latency rounds' median of the same artifact."""
    from edgeship.measure.stats import timing_summary

    path = result_path(cfg, device, artifact)
    try:
        lat = json.loads(path.read_text())
    except (OSError, ValueError):
        lat = None
    if not isinstance(lat, dict) or lat.get("status") != "ok" or \
            (lat.get("artifact") or {}).get("artifact_digest") != digest or not (lat.get("timing") or {}).get("samples_ns"):
        return {"note": f"no latency result of this build on '{device}' to set the per-op times against "
                        f"(run 'edgeship profile --device {device}')"}
    median = timing_summary(lat["timing"]).p50
    total = float(ops["total"]["p50_ms"])
    profiled = float(ops["profiled_run"]["p50_ms"])
    coverage = total / median if median else None
    out: dict[str, Any] = {"median_ms": median, "ops_sum_ms": total, "coverage": coverage,
                           "profiled_run_ms": profiled, "overhead": profiled / median - 1 if median else None,
                           "note": None}
    if coverage is not None and abs(coverage - 1) > COVERAGE_TOLERANCE:
        if coverage < 1:
            out["note"] = (f"per-op times sum to {coverage:.0%} of the median latency ({total:.4g} of {median:.4g} ms): "
                           f"the other {median - total:.4g} ms is the runtime outside its kernels (binding inputs and "
                           "outputs, the Python call, moving between nodes), which weighs most on a fast model")
        else:
            out["note"] = (f"per-op times sum to {coverage:.0%} of the median latency ({total:.4g} of {median:.4g} ms): "
                           "the profiler's own cost inside each kernel event (timestamps, fences, whole "
                           "microseconds in onnxruntime) exceeds the time between kernels; rank the ops, do not add them")
    return out


def load_ops(cfg: Config, device: str, artifact: str, digest: str | None = None) -> dict[str, Any] | None:
    """A saved op profile, or None when there is none (or, with ``digest``, one of another build)."""
    try:
        data = json.loads(ops_path(cfg, device, artifact).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("schema") != OPS_SCHEMA:
        return None
    if digest is not None and (data.get("artifact") or {}).get("artifact_digest") != digest:
        return None
    return data


def all_ops(cfg: Config) -> list[dict[str, Any]]:
    """Every saved op profile of the configured model whose artifact is still the one on disk."""
    root = cfg.build / "results"
    out: list[dict[str, Any]] = []
    if not root.is_dir():
        return out
    files = sorted(root.glob("*/ops/*.json"))
    if not files:
        return out
    # display only: an artifact that is missing or broken (judged as such by the gate) has none
    current = {r.name: artifact_digest(r.path) for r in scan_artifacts(cfg)[0]}
    for f in files:
        data = load_ops(cfg, f.parent.parent.name, f.stem, current.get(f.stem, "-"))
        if data is not None and (data.get("artifact") or {}).get("model") == cfg.model.name:
            out.append(data)
    return out
