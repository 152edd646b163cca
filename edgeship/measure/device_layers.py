"""eval --device NAME --layers: per-layer fidelity computed from what the device computed.

For each artifact, a few evaluation samples (real ones: a random input can pass where a real
one fails) go to the device with the artifact and the runner; the runner runs each sample
through the shipped artifact and once more with the layers' tensors kept, checks the two give
the same outputs, and returns the tensors in the runtime's own dtype (an INT8 tensor travels
as int8) with their value ranges summarised on the device. Here they are compared with the
FP32 artifact's tensors of the same names (edgeship/accuracy/device_layers.py). The record
lands in eval.json ``device_layers["<device>/<artifact>"]`` with the artifact's digest and,
for ONNX, the digest of the debug copy that produced the tensors.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgeship.accuracy.device_layers import (
    DEFAULT_SAMPLES,
    DEFAULT_THRESHOLD,
    compare_layers,
    fp32_twin,
    onnx_debug_copy,
    onnx_modules,
    onnx_reference,
    tflite_reference,
)
from edgeship.artifact.atomic import write_json_atomic
from edgeship.artifact.eval_file import SCHEMA as EVAL_SCHEMA
from edgeship.artifact.eval_file import entry_key, eval_path, load_eval
from edgeship.artifact.manifest import artifact_digest
from edgeship.artifact.runner_files import RUNNER_PACKAGE, write_runner_package
from edgeship.artifact.selection import ArtifactRef, find_artifacts
from edgeship.config import Config
from edgeship.devices.base import Device, open_device
from edgeship.errors import DeviceError
from edgeship.measure.profile import runner_failure
from edgeship.measure.scoring import cpu_block

RESULT_SCHEMA = "edgeship.result/1"


def device_layers(cfg: Config, device: str, refs: list[ArtifactRef], samples: int = DEFAULT_SAMPLES,
                  threshold: float = DEFAULT_THRESHOLD, on_event: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Per-layer fidelity of every artifact in ``refs`` on ``device``; stored in eval.json."""
    from edgeship.calibration import evaluation_samples

    say = on_event or (lambda _m: None)
    data = evaluation_samples(cfg)[:samples]
    feeds = [{s.name: np.asarray(x.inputs[s.name]) for s in cfg.model.inputs} for x in data]
    every = find_artifacts(cfg)
    out: dict[str, Any] = {}
    dev = open_device(device, cfg)
    if getattr(type(dev), "profile_native", None) is not None:
        for ref in refs:
            out[entry_key(device, ref.name)] = _record(cfg, device, ref, {"status": "skipped", "skip_reason":
                                                       f"{dev.kind} device: the native benchmark tools return no tensors"})
        _store(cfg, out)
        return out
    with dev, tempfile.TemporaryDirectory(prefix="edgeship-layers-") as tmp:
        for ref in refs:
            say(f"layers of {ref.name} on {device} ({len(feeds)} samples) ...")
            fp32 = fp32_twin(every, ref)
            rec = _one(cfg, dev, ref, fp32, feeds, threshold, Path(tmp) / ref.name)
            out[entry_key(device, ref.name)] = rec
            first = rec.get("first_divergent")
            if rec["status"] == "ok":
                say(f"  {ref.name}: first divergent layer: " + (f"{first['layer']} ({first.get('module') or first['op_type']}, "
                    f"cosine {first['cosine_min']:.4f})" if first else f"none below cosine {threshold}"))
    _store(cfg, out)
    return out


def _one(cfg: Config, dev: Device, ref: ArtifactRef, fp32: ArtifactRef, feeds: list[dict[str, np.ndarray]],
         threshold: float, tmp: Path) -> dict[str, Any]:
    where = f"device '{dev.name}', artifact {ref.name}"
    digest = artifact_digest(ref.path)
    bundle = tmp / "bundle"
    shutil.copytree(ref.path, bundle / "artifact")
    write_runner_package(bundle, ref.manifest.runtime)
    np.savez(bundle / "chunk.npz", **{k: np.stack([f[k] for f in feeds]) for k in feeds[0]})  # type: ignore[arg-type]
    onnx = ref.manifest.runtime == "onnxruntime"
    debug: dict[str, Any] = {}
    taps: list[dict[str, Any]] = []
    if onnx:
        sha, taps = onnx_debug_copy(ref.model_path, bundle / "debug" / "model.debug.onnx")
        debug = {"debug_model": "debug/model.debug.onnx", "debug_model_sha256": sha}
    remote = _step(dev, where, "push bundle", dev.push, bundle, f"layers-{ref.name}")
    argv = [dev.python or "python3", "-m", f"{RUNNER_PACKAGE}.runner", "--artifact", f"{remote}/artifact",
            "--eval-inputs", f"{remote}/chunk.npz", "--eval-outputs", f"{remote}/outputs.npz",
            "--out", f"{remote}/result.json", "--layers-out", f"{remote}/layers.npz", "--threads", str(cfg.profile.threads)]
    if onnx:
        argv += ["--options", json.dumps({"debug_model": f"{remote}/{debug['debug_model']}",
                                          "debug_sha256": debug["debug_model_sha256"]})]
    run = _step(dev, where, "run", dev.run, argv, timeout=cfg.profile.timeout_s, cwd=remote)
    if run.returncode != 0:
        raise runner_failure(run.returncode, run.stderr, f"{where}: layers", remote, ref,
                             "the evaluation set does not fit the artifact, re-export if [model] inputs changed")
    _step(dev, where, "pull result", dev.pull, f"{remote}/result.json", tmp / "result.json")
    try:
        result = json.loads((tmp / "result.json").read_text())
    except ValueError as exc:
        raise DeviceError(f"{where}: pull result: unreadable result.json ({exc})") from None
    if not isinstance(result, dict) or result.get("schema") != RESULT_SCHEMA:
        raise DeviceError(f"{where}: pull result: not a {RESULT_SCHEMA} result; is the runner on the device current?")
    rec = _record(cfg, dev.name, ref, {"status": result.get("status"), "skip_reason": result.get("skip_reason")}, digest)
    rec.update(debug)
    rec["cpu"] = cpu_block((result.get("env") or {}).get("cpu"))
    layers = result.get("layers") or {}
    if result.get("status") != "ok":
        return rec
    if "unreported" in layers:
        rec.update(status="unreported", skip_reason=layers["unreported"])
        return rec
    _step(dev, where, "pull layers", dev.pull, f"{remote}/layers.npz", tmp / "layers.npz")
    with contextlib.suppress(DeviceError):      # the work dir goes with the device anyway
        dev.remove(remote)
    index = list(layers.get("tensors") or [])
    if onnx:   # the runner names the debug outputs; the taps say which FP32 tensor each one is
        by_output = {t["output"]: t for t in taps}
        for t in index:
            tap = by_output.get(t["name"], {})
            t.update(match=tap.get("name", t["name"]), node=tap.get("node"), op_type=tap.get("op_type"),
                     quantization=tap.get("quantization") or t.get("quantization"))
            q = t["quantization"]
            if q and t.get("min") is not None and tap:   # the runner saw raw integers: its range in real units
                t["min"], t["max"] = (t["min"] - q["zero_point"]) * q["scale"], (t["max"] - q["zero_point"]) * q["scale"]
    try:
        with np.load(tmp / "layers.npz", allow_pickle=False) as z:
            arrays = {k: np.asarray(z[k]) for k in z.files}
    except (OSError, ValueError) as exc:
        raise DeviceError(f"{where}: pull layers: unreadable layers.npz ({exc})") from None
    reference = onnx_reference(fp32, feeds, tmp) if onnx else tflite_reference(fp32, feeds)
    modules = onnx_modules(fp32.model_path) if onnx else None
    rec.update(compare_layers(index, arrays, reference, threshold, modules, "onnx" if onnx else "tflite"))
    rec["outputs_max_abs_diff"] = layers.get("outputs_max_abs_diff")
    rec["reference"] = {"artifact": fp32.name, "artifact_digest": artifact_digest(fp32.path), "computed_on": "host"}
    rec["tool"] = ("onnxruntime on the device: a debug copy with the layers' QuantizeLinear outputs (float models: every "
                   "node output) as graph outputs" if onnx else
                   "LiteRT on the device: the interpreter in experimental_preserve_all_tensors mode")
    return rec


def _record(cfg: Config, device: str, ref: ArtifactRef, status: dict[str, Any], digest: str | None = None) -> dict[str, Any]:
    return {"device": device, "artifact": ref.name, "target": ref.target.value, "precision": ref.precision.value,
            "artifact_digest": digest or artifact_digest(ref.path), "config_digest": cfg.digest,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), **status}


def _step(dev: Device, where: str, step: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    try:
        return fn(*args, **kwargs)
    except DeviceError as exc:
        raise DeviceError(f"{where}: {step}: {str(exc).removeprefix(f'device {dev.name!r}: ')}") from None


def _store(cfg: Config, records: dict[str, Any]) -> None:
    data = load_eval(cfg) or {"schema": EVAL_SCHEMA, "model": cfg.model.name, "config_digest": cfg.digest,
                              "samples": 0, "reference": {"accuracy": None}, "entries": {}}
    data.setdefault("device_layers", {}).update(records)
    data.pop("updated", None)
    write_json_atomic(eval_path(cfg), data)
