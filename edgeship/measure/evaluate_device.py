"""eval --device NAME: the evaluation set through the standalone runner on a device.

The artifact and the runner are pushed once; the samples then go in chunks (``chunk`` per
npz, 64 by default) so a phone's or a board's storage never holds the whole set: push a
chunk, run the runner in batch mode (each sample once, no timing loop), pull the outputs,
delete both files on the device. The outputs are compared with the FP32 reference here, on
the host. Devices without python (adb: native benchmark tools print timings, not outputs)
are SKIPPED with that reason; so is an artifact whose runtime the device lacks (CoreML off
macOS). A failed step is one line naming the device, the artifact and the step.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from edgeship.artifact.bundle import artifact_inputs
from edgeship.artifact.runner_files import RUNNER_PACKAGE, write_runner_package
from edgeship.artifact.selection import ArtifactRef
from edgeship.config import Config
from edgeship.devices.base import Device, RunResult, open_device
from edgeship.errors import DeviceError, EdgeshipError
from edgeship.measure.profile import runner_failure
from edgeship.measure.scoring import Scorer, cpu_block, new_entry

SCHEMA = "edgeship.result/1"
NO_OUTPUTS = "the native benchmark tools print timings, not outputs"


def evaluate_on_device(cfg: Config, device: str, refs: list[ArtifactRef], scorer: Scorer, chunk: int,
                       say: Callable[[str], None]) -> Iterator[dict[str, Any]]:
    """Yield one eval entry per artifact; an error carries the failed artifact's entry (``eval_entry``)."""
    n = len(scorer.samples)
    dev = open_device(device, cfg)
    if getattr(type(dev), "profile_native", None) is not None:
        # known without reaching the phone: its tools cannot return what it computed
        for ref in refs:
            entry = new_entry(cfg, ref, device, n)
            entry.update(status="skipped", skip_reason=f"{dev.kind} device: {NO_OUTPUTS}")
            say(f"  {ref.name} on {device}: SKIPPED ({entry['skip_reason']})")
            yield entry
        return
    with dev:
        for ref in refs:
            say(f"eval {ref.name} on {device} ...")
            entry = new_entry(cfg, ref, device, n)
            try:
                outs, env, skipped = _run_chunks(cfg, dev, ref, scorer, chunk, say)
            except EdgeshipError as exc:
                entry.update(status="error", skip_reason=str(exc))
                exc.eval_entry = entry  # type: ignore[attr-defined]
                raise
            entry["cpu"] = _cpu(env)
            if skipped:
                entry.update(status="skipped", skip_reason=skipped)
                say(f"  {ref.name}: SKIPPED ({skipped})")
            else:
                entry.update(scorer.score(outs, ref.manifest))
            yield entry


def _cpu(env: dict[str, Any]) -> dict[str, Any]:
    return cpu_block(env.get("cpu"))


def _run_chunks(cfg: Config, dev: Device, ref: ArtifactRef, scorer: Scorer, chunk: int,
                say: Callable[[str], None]) -> tuple[list[list[np.ndarray]], dict[str, Any], str | None]:
    """(per-sample outputs, the runner's env, a skip reason or None)."""
    where = f"device '{dev.name}', artifact {ref.name}"
    names = [t.name for t in ref.manifest.outputs]
    inputs = [s.name for s in cfg.model.inputs]
    outs: list[list[np.ndarray]] = []
    env: dict[str, Any] = {}
    result: dict[str, Any] = {"status": "ok"}
    with tempfile.TemporaryDirectory(prefix="edgeship-eval-") as tmp:
        bundle = Path(tmp) / "bundle"
        shutil.copytree(ref.path, bundle / "artifact")
        write_runner_package(bundle, ref.manifest.runtime)
        remote = _step(dev, where, "push bundle", dev.push, bundle, f"eval-{ref.name}")
        for start in range(0, len(scorer.samples), chunk):
            part = scorer.samples[start:start + chunk]
            say(f"  {ref.name}: samples {start + 1}-{start + len(part)} of {len(scorer.samples)}")
            local_in = Path(tmp) / "chunk.npz"
            stacked = artifact_inputs(ref, {k: np.stack([s.inputs[k] for s in part]) for k in inputs})
            np.savez(local_in, **stacked)  # type: ignore[arg-type]
            tag = f"{start // chunk:05d}"
            r_in = _step(dev, where, f"push chunk {tag}", dev.push, local_in, f"eval-in-{tag}.npz")
            r_out, r_res = f"{remote}/outputs-{tag}.npz", f"{remote}/result-{tag}.json"
            argv = [dev.python or "python3", "-m", f"{RUNNER_PACKAGE}.runner", "--artifact", f"{remote}/artifact",
                    "--eval-inputs", r_in, "--eval-outputs", r_out, "--out", r_res, "--threads", str(cfg.profile.threads)]
            try:
                run = _step(dev, where, f"run chunk {tag}", dev.run, argv, timeout=cfg.profile.timeout_s, cwd=remote)
                _check_exit(run, where, remote, ref)
                result = _pull_json(dev, where, r_res, Path(tmp) / "result.json")
                env = result.get("env") or {}
                if result["status"] != "skipped":
                    pulled = Path(tmp) / "outputs.npz"
                    _step(dev, where, f"pull outputs {tag}", dev.pull, r_out, pulled)
                    outs += _split(pulled, names, len(part), where)
            except BaseException:
                with contextlib.suppress(Exception):   # the first failure is the one to report
                    dev.remove(r_in, r_out, r_res)
                raise
            # the device keeps no chunk: a phone's storage is not a scratch disk
            _step(dev, where, f"delete chunk {tag}", dev.remove, r_in, r_out, r_res)
            if result["status"] == "skipped":
                break
        # nor the artifact once it is evaluated (the work dir itself goes when the device closes)
        _step(dev, where, "delete bundle", dev.remove, remote)
    if result["status"] == "skipped":
        return [], env, result.get("skip_reason") or "the runtime is not available on the device"
    return outs, env, None


def _step(dev: Device, where: str, step: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    try:
        return fn(*args, **kwargs)
    except DeviceError as exc:
        msg = str(exc).removeprefix(f"device '{dev.name}': ")
        raise DeviceError(f"{where}: {step}: {msg}") from None


def _check_exit(run: RunResult, where: str, remote: str, ref: ArtifactRef) -> None:
    if run.returncode != 0:
        raise runner_failure(run.returncode, run.stderr, f"{where}: run", remote, ref,
                             "the evaluation set does not fit the artifact, re-export if [model] inputs changed")


def _pull_json(dev: Device, where: str, remote: str, local: Path) -> dict[str, Any]:
    _step(dev, where, "pull result", dev.pull, remote, local)
    try:
        result = json.loads(local.read_text())
    except ValueError as exc:
        raise DeviceError(f"{where}: pull result: unreadable result.json ({exc})") from None
    if not isinstance(result, dict) or result.get("schema") != SCHEMA or result.get("status") not in ("ok", "skipped"):
        raise DeviceError(f"{where}: pull result: not a {SCHEMA} result; is the runner on the device current?")
    return result


def _split(path: Path, names: list[str], n: int, where: str) -> list[list[np.ndarray]]:
    """The stacked outputs of a chunk as per-sample lists in manifest output order."""
    try:
        with np.load(path, allow_pickle=False) as z:
            stacked = [np.asarray(z[name]) for name in names]
    except (OSError, ValueError, KeyError) as exc:
        raise DeviceError(f"{where}: pull outputs: the runner's outputs do not hold {names} ({exc})") from None
    if any(len(a) != n for a in stacked):
        raise DeviceError(f"{where}: pull outputs: expected {n} samples per output, got {[len(a) for a in stacked]}")
    return [[a[i] for a in stacked] for i in range(n)]
