"""profile: push each artifact with the standalone runner to a device, run, pull result.json.

Never measures in the edgeship process: the runner always runs in a fresh interpreter on
the device (a subprocess for ``local``). A runner that fails, crashes or hangs gives one clear
line naming the device and the artifact, and no result file.

The runner also returns the outputs it computed on the device for the profiled input; they
are compared with the FP32 PyTorch reference's (``result["outputs"]``), so a device whose
runtime computes something else (another interpreter build, a delegate) shows it at once.
"""

from __future__ import annotations

import datetime as _dt
import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgeship.artifact.atomic import write_json_atomic
from edgeship.artifact.bundle import build_bundle
from edgeship.artifact.manifest import artifact_digest
from edgeship.artifact.runner_files import RUNNER_PACKAGE
from edgeship.artifact.selection import ArtifactRef, find_artifacts, pick_for_class
from edgeship.config import Config
from edgeship.devices.base import Device, open_device
from edgeship.errors import ArtifactError, DeviceError, EdgeshipError, InputDataError, RuntimeFailure
from edgeship.measure.inputs import profiling_inputs
from edgeship.types import Precision, Target
from edgeship.untrusted import UntrustedJSONError, loads

SCHEMA = "edgeship.result/1"
# exit codes of runtimes/runner.py (kept in sync by tests/test_runner.py)
EXIT_BAD_ARTIFACT = 3
EXIT_RUNTIME = 4
EXIT_BAD_INPUTS = 5


def results_dir(cfg: Config, device: str) -> Path:
    return cfg.build / "results" / device


def result_path(cfg: Config, device: str, artifact_name: str) -> Path:
    return results_dir(cfg, device) / f"{artifact_name}.json"


def runner_argv(device: Device, bundle: str, ref: ArtifactRef, cfg: Config,
                min_runs: int | None = None, min_seconds: float | None = None,
                threads: int | None = None, outputs: bool = False) -> list[str]:
    p = cfg.profile
    sep = "/"  # remote paths are POSIX on every device kind we support
    return [
        device.python or "python3", "-m", f"{RUNNER_PACKAGE}.runner",
        "--artifact", f"{bundle}{sep}artifact", "--inputs", f"{bundle}{sep}inputs.npz",
        "--out", f"{bundle}{sep}result.json",
        "--threads", str(threads if threads is not None else p.threads),
        "--warmup-runs", str(p.warmup_runs), "--warmup-seconds", str(p.warmup_seconds),
        "--min-runs", str(min_runs if min_runs is not None else p.min_runs),
        "--min-seconds", str(min_seconds if min_seconds is not None else p.min_seconds),
        "--max-seconds", str(p.max_seconds), "--max-runs", str(p.max_runs),
    ] + (["--outputs", f"{bundle}{sep}outputs.npz"] if outputs else [])


def profile_artifact(cfg: Config, device: Device, ref: ArtifactRef, min_runs: int | None = None,
                     min_seconds: float | None = None, inputs: dict[str, Any] | None = None,
                     threads: int | None = None, reference: Reference | None = None) -> dict[str, Any]:
    """Run one artifact on an open device and return its validated result (not saved).

    With ``reference`` (``Reference(cfg, inputs)``) the device's own outputs are pulled and
    compared with the FP32 reference's in ``result["outputs"]``.
    """
    # digest before the run: the result must name the bytes that were measured
    digest = artifact_digest(ref.path)
    native = getattr(device, "profile_native", None)
    want = min_runs if min_runs is not None else cfg.profile.min_runs
    if native is not None:   # devices without python (adb) run the vendor's benchmark tool
        result = _finish(native(ref, cfg, min_runs=min_runs), device, ref, want, cfg, digest)
        if reference is not None and result["status"] == "ok":
            result["outputs"] = {"skipped": f"{result['runtime'].get('name')} prints timings, not outputs"}
        return result
    with tempfile.TemporaryDirectory(prefix="edgeship-bundle-") as tmp:
        local = build_bundle(Path(tmp) / "bundle", ref, inputs if inputs is not None else profiling_inputs(cfg))
        remote = device.push(local, f"bundle-{ref.name}")
        where = f"device '{device.name}', artifact {ref.name}"
        try:
            run = device.run(runner_argv(device, remote, ref, cfg, min_runs, min_seconds, threads,
                                         outputs=reference is not None),
                             timeout=cfg.profile.timeout_s, cwd=remote)
        except DeviceError as exc:
            msg = str(exc)
            prefix = f"device '{device.name}': "
            raise DeviceError(f"{where}: {msg.removeprefix(prefix)}") from None
        if run.returncode != 0:
            raise runner_failure(run.returncode, run.stderr, where, remote, ref,
                                 "the profiling inputs come from [data] and [model] inputs of edgeship.toml, "
                                 "re-export if those changed")
        pulled = Path(tmp) / "result.json"
        device.pull(f"{remote}/result.json", pulled)
        try:
            result = json.loads(pulled.read_text())
        except ValueError as exc:
            raise DeviceError(f"{where}: unreadable result.json ({exc})") from None
        result = _finish(result, device, ref, want, cfg, digest)
        if reference is not None and result["status"] == "ok":
            result["outputs"] = _compare_outputs(device, f"{remote}/outputs.npz", Path(tmp) / "outputs.npz",
                                                 ref, reference, where)
    return result


class Reference:
    """The FP32 PyTorch outputs for the profiled inputs (in ``[model] outputs`` order), from the
    model each artifact was exported from: the compressed one for an export of build/compressed
    (like eval's compress/evidence.SourceReferences), else the original.

    Computed on first use per source, after a device run succeeded, so a device's own error
    (inputs that do not match the artifact, say) is the one reported. Without torch on this
    host, or when the compressed source changed since the export, there is none, and the
    reason says why (the latency measured stands; only the outputs comparison is skipped).
    """

    def __init__(self, cfg: Config, inputs: dict[str, np.ndarray]) -> None:
        self._cfg, self._inputs = cfg, inputs
        self.configured_kinds = dict(cfg.model.output_kinds)
        # source key (compress.evidence.source_key) -> (outputs or None, reason)
        self._by_source: dict[str, tuple[tuple[np.ndarray, ...] | None, str]] = {}
        self.reason = ""

    def outputs(self, manifest: Any = None) -> tuple[np.ndarray, ...] | None:
        """The reference outputs for an artifact (its manifest; None: the original model);
        None with ``reason`` set when there are none."""
        from edgeship.compress.evidence import source_key

        key = source_key(manifest)
        if key not in self._by_source:
            self._by_source[key] = self._compute(key, manifest)
        outs, self.reason = self._by_source[key]
        return outs

    def _compute(self, key: str, manifest: Any) -> tuple[tuple[np.ndarray, ...] | None, str]:
        from edgeship.compress.evidence import source_model
        from edgeship.errors import MissingDependency
        from edgeship.model.reference import load_reference, run_reference

        try:
            model = load_reference(self._cfg) if key == "original" else source_model(self._cfg, manifest)
        except MissingDependency as exc:
            return None, f"no FP32 reference on this host: {exc}"
        except ArtifactError as exc:
            return None, f"no FP32 source model: {exc}"
        return tuple(run_reference(model, self._inputs, self._cfg.model.inputs)), ""

    def snapshot(self, refs: list[ArtifactRef]) -> dict[str, tuple[tuple[np.ndarray, ...] | None, str]]:
        """Every source's outputs that ``refs`` need, computed here (a cluster node gets them)."""
        from edgeship.compress.evidence import source_key

        for ref in refs:
            self.outputs(ref.manifest)
        keys = {source_key(ref.manifest) for ref in refs}
        return {k: v for k, v in self._by_source.items() if k in keys}

    @classmethod
    def restore(cls, cfg: Config, inputs: dict[str, np.ndarray],
                state: dict[str, tuple[tuple[np.ndarray, ...] | None, str]]) -> Reference:
        ref = cls(cfg, inputs)
        ref._by_source.update(state)
        return ref


def _compare_outputs(device: Device, remote: str, local: Path, ref: ArtifactRef, reference: Reference,
                     where: str) -> dict[str, Any]:
    from edgeship.compress.evidence import source_key
    from edgeship.measure.output_kinds import output_kinds
    from edgeship.metrics import closeness, fidelity
    from edgeship.types import OutputKind

    expected = reference.outputs(ref.manifest)
    if expected is None:
        return {"skipped": reference.reason}
    source = "original" if source_key(ref.manifest) == "original" else "compressed"
    device.pull(remote, local)
    names = [t.name for t in ref.manifest.outputs]
    # top-1 means something for a classification output only (eval's rule, edgeship/measure/output_kinds.py)
    first = output_kinds(reference.configured_kinds, names, [list(expected)])[0].kind
    try:
        with np.load(local) as npz:
            got = [np.asarray(npz[n]) for n in names]
        fid = (fidelity if first is OutputKind.CLASSIFICATION else closeness)([list(expected)], [got])
    except (OSError, ValueError, KeyError) as exc:
        raise DeviceError(f"{where}: the runner's outputs.npz does not hold outputs {names} "
                          f"like the reference's ({exc})") from None
    return {"reference": "pytorch-fp32", "source": source, "samples": 1, "cosine": fid["cosine_min"],
            "max_abs_err": fid["max_abs_err"], "top1_agreement": fid["top1_agreement"]}


def _finish(result: dict[str, Any], device: Device, ref: ArtifactRef, min_runs: int = 1,
            cfg: Config | None = None, digest: str | None = None) -> dict[str, Any]:
    """Validate a runner result (schema, status, samples) and add the device/artifact blocks.

    The artifact block carries the evidence digest (sha256 of manifest.json's bytes) and the
    result the config digest, so the gate can refuse a result measured on another build.
    """
    where = f"device '{device.name}', artifact {ref.name}"
    if not isinstance(result, dict) or result.get("schema") != SCHEMA:
        got = result.get("schema") if isinstance(result, dict) else type(result).__name__
        raise DeviceError(f"{where}: result has schema {got!r}, expected {SCHEMA!r}; is the runner on the device current?")
    status = result.get("status")
    if status not in ("ok", "skipped"):
        raise DeviceError(f"{where}: result has status {status!r}, expected 'ok' or 'skipped'")
    if status == "skipped" and not result.get("skip_reason"):
        raise DeviceError(f"{where}: a skipped result must say why (skip_reason)")
    if status == "ok":
        timing = result.get("timing") or {}
        samples = timing.get("samples_ns") or []
        aggregates = timing.get("aggregate")
        if not samples and not aggregates:
            raise DeviceError(f"{where}: the runner returned no latency samples")
        if any((not isinstance(s, int)) or isinstance(s, bool) or s <= 0 for s in samples):
            raise DeviceError(f"{where}: the runner returned invalid latency samples (need positive integer ns)")
        # fewer than asked is only legitimate when the runner says max_seconds cut it short
        if samples and len(samples) < min_runs and not timing.get("capped"):
            raise DeviceError(f"{where}: the runner returned {len(samples)} samples, fewer than min_runs={min_runs}")
        for key in ("load_ns", "first_ns"):
            if not isinstance(timing.get(key), int) or timing[key] < 0:
                raise DeviceError(f"{where}: result lacks timing.{key}")
        if "memory" not in result or "env" not in result:
            raise DeviceError(f"{where}: result lacks the memory/env blocks")
    result["device"] = {"name": device.name, "kind": device.kind}
    if getattr(device, "emulated", False):   # qemu-user: recorded, labelled, never gated (boards.py)
        result["device"]["emulated"] = True
        for block in ("timing", "memory"):
            if isinstance(result.get(block), dict):
                result[block]["emulated"] = True
    digest = digest or artifact_digest(ref.path)
    result["artifact"] = {
        "name": ref.name, "model": ref.manifest.model, "target": ref.manifest.target,
        "precision": ref.manifest.precision, "runtime": ref.manifest.runtime,
        "size_bytes": ref.manifest.size_bytes, "artifact_digest": digest,
        "manifest_sha256": digest,   # the older name of the same digest, kept for readers of old results
    }
    result["config_digest"] = cfg.digest if cfg is not None else None
    # milliseconds: with the artifact digest it names the session in build/history (sessions.py)
    result["created"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds")
    return result


def profile(
    cfg: Config, device: str = "local", targets: tuple[Target, ...] | None = None,
    precisions: tuple[Precision, ...] | None = None, on_event: Callable[[str], None] | None = None,
    min_runs: int | None = None, min_seconds: float | None = None, threads: int | None = None,
    rounds: int | None = None,
) -> list[dict[str, Any]]:
    """Profile every matching artifact on ``device``; results land in build/results/<device>/.

    Each artifact is measured in R rounds (``rounds``, else ``[profile] rounds``, else by device
    kind: see edgeship.measure.rounds), each a fresh runner process, interleaved across the artifacts:
    round 1 of every artifact, then round 2 ... so a slow spell hits them all alike.
    ``min_runs``/``min_seconds`` (totals over the rounds) and ``threads`` override ``[profile]``
    for this call. An artifact's result is written once its last round is done (atomically, over
    the earlier one); an interrupted or failed run leaves every earlier result as it was. The
    device's outputs are compared with the reference in round 1.

    A Ray device lab is the caller's choice (edgeship.api.profile dispatches to
    edgeship/cluster/): this function measures one device reached from this process.
    """
    say = on_event or (lambda _m: None)
    refs = pick_for_class(find_artifacts(cfg, targets, precisions), known_device_class(cfg, device))
    inputs = profiling_inputs(cfg)
    reference = Reference(cfg, inputs)
    # nothing is deleted first: an artifact's result is replaced only by its new complete one
    # (measure_rounds); an earlier result stands only while its digest still names the artifact
    # on disk (the gate refuses it once the artifact changes: edgeship/gating/evidence.py)
    with open_device(device, cfg) as dev:
        def save(name: str, result: dict[str, Any]) -> None:
            write_json_atomic(result_path(cfg, device, name), result)

        results = measure_rounds(cfg, dev, refs, inputs, reference, say, save, min_runs, min_seconds, threads, rounds)
    record_history(cfg, results)
    return results


def record_history(cfg: Config, results: list[dict[str, Any]]) -> None:
    """One history line per measured result, per device (edgeship/measure/sessions.py): the gate learns
    each device's session-to-session noise from them."""
    from edgeship.measure.sessions import record_sessions

    by_device: dict[str, list[dict[str, Any]]] = {}
    for r in results:
        by_device.setdefault((r.get("device") or {}).get("name", ""), []).append(r)
    for name, rs in by_device.items():
        if name:
            record_sessions(cfg, name, rs)


def measure_rounds(cfg: Config, dev: Device, refs: list[ArtifactRef], inputs: dict[str, Any],
                   reference: Reference | None, say: Callable[[str], None],
                   save: Callable[[str, dict[str, Any]], None], min_runs: int | None = None,
                   min_seconds: float | None = None, threads: int | None = None,
                   rounds: int | None = None) -> list[dict[str, Any]]:
    """The rounds of ``refs`` on the open device ``dev``, interleaved; ``save`` gets each
    artifact's merged result once all its rounds are done (the submitting host writes it; a
    cluster node only collects it). Never a partial one: a result of 1 of 5 rounds would replace
    complete evidence with weaker evidence, and an interrupted run must leave the old one."""
    import uuid

    from edgeship.measure.rounds import merge_rounds, round_plan

    device = dev.name
    warned: set[str] = set()
    plan = round_plan(cfg, dev.kind, min_runs, min_seconds, rounds)
    # names the session: round i of every artifact here ran within the same pass over them, so
    # two results of one session can be compared round by round (gate/speedup.py)
    session = uuid.uuid4().hex
    done: dict[str, list[dict[str, Any]]] = {ref.name: [] for ref in refs}
    for i in range(plan.rounds):
        for ref in refs:
            runs = done[ref.name]
            if runs and runs[0]["status"] != "ok":
                continue     # SKIPPED in round 1: the runtime cannot run here, no more rounds
            say(f"profile {ref.name} on {device} (round {i + 1}/{plan.rounds}) ...")
            runs.append(profile_artifact(plan.cfg, dev, ref, None, None, inputs, threads,
                                         reference if i == 0 else None))
            _warn_class_mismatch(ref, runs[-1], device, warned)
            if runs[-1]["status"] != "ok" and i > 0:
                raise DeviceError(f"device '{device}', artifact {ref.name}: round {i + 1} was skipped "
                                  f"({runs[-1].get('skip_reason')}) although round 1 ran; check the device")
            skipped = runs[0]["status"] != "ok"    # SKIPPED in round 1 is complete: no more rounds
            if skipped or i == plan.rounds - 1:
                save(ref.name, {**merge_rounds(runs), "session": session})   # round 1's outputs comparison rides along
            if skipped:
                say(f"  {ref.name}: SKIPPED ({runs[0]['skip_reason']})")
    return [{**merge_rounds(done[ref.name]), "session": session} for ref in refs]


def known_device_class(cfg: Config, device: str) -> str | None:
    """The device's CPU class before running anything: declared, or this host's for local."""
    d = cfg.devices.get(device)
    if d is None or d.cpu_class is not None:
        return d.cpu_class if d is not None else None
    if d.kind == "local":
        from edgeship.runtimes.cpuinfo import cpu_features

        return str(cpu_features()["cpu_class"])
    return None


def _warn_class_mismatch(ref: ArtifactRef, result: dict[str, Any], device: str, warned: set[str]) -> None:
    """Once per device: an INT8 artifact built for another CPU class than the device reports."""
    import sys

    cpu = (result.get("env") or {}).get("cpu")
    have = cpu.get("cpu_class") if isinstance(cpu, dict) else None
    if ref.built_for_class is None or have in (None, "unknown") or have == ref.built_for_class or device in warned:
        return
    warned.add(device)
    print(f"warning: device '{device}' is {have} but {ref.name} was built for {ref.built_for_class}; its INT8 "
          f"numbers there are the device's own (re-export with 'edgeship export --for {device}')", file=sys.stderr)


def gated_statistics(cfg: Config, device: str, target: str, precision: str) -> tuple[str, ...]:
    """Latency statistics some ``[[budgets]]`` entry gates for this device and artifact."""
    import fnmatch

    out: list[str] = []
    for b in cfg.budgets:
        if b.latency_ms is None or not all(fnmatch.fnmatchcase(v, pat) for v, pat in
                                           ((device, b.device), (target, b.target), (precision, b.precision))):
            continue
        out += [s for s in ("p50", "p90", "p99", "mean") if getattr(b.latency_ms, s) is not None]
    return tuple(dict.fromkeys(out))


def latency_limits(cfg: Config, device: str, target: str, precision: str) -> dict[str, list[float]]:
    """Per latency statistic, the budgets (ms) that ``[[budgets]]`` set for this device and artifact."""
    import fnmatch

    out: dict[str, list[float]] = {}
    for b in cfg.budgets:
        if b.latency_ms is None or not all(fnmatch.fnmatchcase(v, pat) for v, pat in
                                           ((device, b.device), (target, b.target), (precision, b.precision))):
            continue
        for stat in ("p50", "p90", "p99", "mean"):
            if getattr(b.latency_ms, stat) is not None:
                out.setdefault(stat, []).append(float(getattr(b.latency_ms, stat)))
    return out


def load_results(cfg: Config, device: str | None = None) -> list[dict[str, Any]]:
    """Saved results of the configured model, for every device (or one)."""
    root = cfg.build / "results"
    out: list[dict[str, Any]] = []
    if not root.is_dir():
        return out
    for d in sorted(root.iterdir()):
        if not d.is_dir() or (device is not None and d.name != device):
            continue
        for f in sorted(d.glob("*.json")):
            r = _read_result(f, d.name)
            if r["artifact"].get("model") == cfg.model.name:
                out.append(r)
    return out


def _read_result(f: Path, device: str) -> dict[str, Any]:
    """One saved result, checked for the blocks the gate joins on; bad files are one line, exit 2."""
    redo = f"delete it or re-run 'edgeship profile --device {device}'"
    try:
        r = loads(f.read_bytes())
    except UntrustedJSONError as exc:   # not UTF-8, not JSON, NaN, nested too deep
        raise ArtifactError(f"{f}: corrupt result file ({exc}); {redo}") from None
    except OSError as exc:
        raise ArtifactError(f"{f}: cannot read the result file ({exc.strerror or exc}); {redo}") from None
    if not isinstance(r, dict):
        raise ArtifactError(f"{f}: not a profile result (a JSON {type(r).__name__}, expected an object); {redo}")
    for block in ("device", "artifact"):
        if not isinstance(r.get(block), dict) or not isinstance(r[block].get("name"), str):
            raise ArtifactError(f"{f}: not a profile result (no {block}.name); {redo}")
    if r.get("status") not in ("ok", "skipped"):
        raise ArtifactError(f"{f}: not a profile result (status {r.get('status')!r}); {redo}")
    if r["status"] == "ok" and not isinstance(r.get("timing"), dict):
        raise ArtifactError(f"{f}: an 'ok' profile result without a timing block; {redo}")
    samples = r["timing"].get("samples_ns", []) if r["status"] == "ok" else []
    if not isinstance(samples, list) or any(isinstance(s, bool) or not isinstance(s, (int, float)) for s in samples):
        raise ArtifactError(f"{f}: an 'ok' profile result whose timing.samples_ns is not a list of numbers; {redo}")
    return r


def runner_failure(returncode: int, stderr: str, where: str, remote: str, ref: ArtifactRef,
                   inputs_hint: str) -> EdgeshipError:
    """The one-line error for a runner that exited ``returncode`` (runtimes/runner.py's codes),
    naming local files rather than the device's temp copies of them."""
    msg = (_last_line(stderr) or f"exit code {returncode}").replace(
        f"{remote}/artifact", str(ref.path)).replace(f"{remote}/", "")
    if returncode == EXIT_BAD_ARTIFACT:
        return ArtifactError(f"{where}: {msg}")
    if returncode == EXIT_BAD_INPUTS:
        return InputDataError(f"{where}: {msg}; {inputs_hint}")
    if returncode == EXIT_RUNTIME:
        return RuntimeFailure(f"{where}: {msg}")
    return DeviceError(f"{where}: the runner crashed ({msg}, exit {returncode})")


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in (text or "").strip().splitlines() if ln.strip()]
    if not lines:
        return ""
    return lines[-1].removeprefix("edgeship-runner: error: ")
