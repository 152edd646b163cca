"""The standalone runner: load one artifact, feed inputs, measure, write result.json.

Runs on the device itself (Python >= 3.8, numpy and one runtime; no torch, no edgeship):
``python3 -m <pkg>.runner --artifact DIR --inputs inputs.npz --out result.json``.

Method (anchored on LiteRT benchmark_model and pyperf): load/init time; the first (cold)
inference; warmup for max(warmup_runs, warmup_seconds); measured runs until
max(min_runs, min_seconds), capped at max_seconds. Every sample is kept, in ns, from
time.perf_counter_ns on the device. Exit codes: 0 ok (or skipped: runtime unavailable),
3 bad artifact (manifest, checksum, the runtime cannot load the model), 4 the runtime failed
to run, 5 bad inputs.npz. Errors are one line on stderr; result.json is written atomically
and only on success. ``--info`` prints the environment and which runtimes import here.

Batch mode (``eval --device``): ``--eval-inputs chunk.npz --eval-outputs out.npz`` runs each
sample of the chunk once (no timing loop) and writes the outputs stacked per output name;
result.json then holds the environment, the runtime and the sample count, no timing. With
``--layers-out layers.npz`` (``eval --device --layers``) each sample also runs once more with
the layers' tensors kept (``Runtime.intermediates``); they are written stacked per tensor in
the runtime's own dtype (an INT8 tensor travels as int8), indexed in result.json ``layers``.

Op profiling (``profile --ops``): ``--op-profile`` runs the timed loop with the runtime's
profiler on and writes an ``edgeship.ops/1`` result: per node and per op type, p50/p90 over
the measured runs, summarised here so only a small JSON travels. It is its own process, never
a latency round: the profiler's overhead must not reach a latency verdict.
"""

import argparse
import hashlib
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from array import array
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from .base import NotReported, RuntimeLoadError, RuntimeRunError, RuntimeUnavailable, get_runtime
from .cpuinfo import cpu_features
from .memory import MemoryProbe

SCHEMA = "edgeship.result/1"
OPS_SCHEMA = "edgeship.ops/1"
# ORT keeps at most ~1e6 profiler events (3 per node and run): bound the profiled runs
OPS_MAX_RUNS = 1000
OPS_MAX_ROWS = 500     # nodes listed one by one; the rest travel as one "other" sum
EXIT_BAD_ARTIFACT = 3
EXIT_RUNTIME = 4
EXIT_BAD_INPUTS = 5
MANIFEST_KEYS = ("runtime", "model_file", "inputs", "outputs", "files")


class BadArtifact(Exception):
    """manifest.json is unreadable or a file does not match its checksum (exit 3)."""


class BadInputs(Exception):
    """inputs.npz does not fit the artifact's input specs (exit 5)."""


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _path_problem(rel: Any, root: str) -> Optional[str]:
    """Why ``rel`` is not a safe path inside the artifact directory ``root`` (a realpath)."""
    if not isinstance(rel, str) or not rel or "\x00" in rel:
        return "is not a file name"
    if os.path.isabs(rel) or rel.startswith(("/", "\\")):
        return "is an absolute path"
    if ".." in rel.replace("\\", "/").split("/"):
        return "leaves the artifact directory"
    if os.path.normpath(rel) != rel:
        return "is not a normalised path"
    real = os.path.realpath(os.path.join(root, rel))
    if os.path.commonpath([root, real]) != root or real == root:
        return "leaves the artifact directory (through a symlink)"
    return None


def _known_runtime(name: Any) -> bool:
    # a runtime module of this package that registers that name; a misspelled runtime must not
    # turn into "skipped: runtime unavailable" (that would hide a failing artifact)
    if not isinstance(name, str) or not name.isidentifier() or name.lower() != name:
        return False
    try:
        get_runtime(name)
    except (RuntimeUnavailable, KeyError):
        return False
    return True


def check_manifest(manifest: Dict[str, Any], artifact: str) -> None:
    """The manifest is an integrity boundary (mirrors edgeship.artifact.manifest.check_manifest)."""
    path = os.path.join(artifact, "manifest.json")
    again = "re-run 'edgeship export'"
    for key in ("runtime", "model_file"):
        if not isinstance(manifest[key], str) or not manifest[key]:
            raise BadArtifact("%s: field %r must be a non-empty string; %s" % (path, key, again))
    files = manifest["files"]
    if not isinstance(files, dict) or not files:
        raise BadArtifact("%s: field 'files' must be a table of the artifact's files; %s" % (path, again))
    root = os.path.realpath(artifact)
    for rel in files:
        reason = _path_problem(rel, root)
        if reason:
            raise BadArtifact("%s: files entry %r %s; %s" % (path, rel, reason, again))
    model_file = manifest["model_file"]
    reason = _path_problem(model_file, root)
    if reason:
        raise BadArtifact("%s: field 'model_file' %r %s; %s" % (path, model_file, reason, again))
    if model_file not in files and not any(f.startswith(model_file + "/") for f in files):
        raise BadArtifact("%s: field 'model_file' %r is not one of the files the manifest covers; %s"
                          % (path, model_file, again))
    if not _known_runtime(manifest["runtime"]):
        raise BadArtifact("%s: field 'runtime' %r is not a runtime this runner knows; %s"
                          % (path, manifest["runtime"], again))


def load_manifest(artifact: str) -> Dict[str, Any]:
    path = os.path.join(artifact, "manifest.json")
    try:
        with open(path) as fh:
            manifest = json.load(fh)
    except (OSError, ValueError) as exc:
        raise BadArtifact("%s: cannot read manifest (%s); re-run 'edgeship export'" % (path, exc))
    missing = [k for k in MANIFEST_KEYS if not isinstance(manifest, dict) or k not in manifest]
    if missing:
        raise BadArtifact("%s: malformed manifest, missing %s; re-run 'edgeship export'" % (path, ", ".join(missing)))
    check_manifest(manifest, artifact)
    for rel, meta in manifest["files"].items():
        p = os.path.join(artifact, rel)
        if not os.path.isfile(p):
            raise BadArtifact("%s: listed in manifest.json but missing; re-run 'edgeship export'" % p)
        try:
            ok = os.path.getsize(p) == int(meta["size"]) and _sha256(p) == meta["sha256"]
        except (KeyError, TypeError, ValueError):
            raise BadArtifact("%s: malformed entry for %r (needs sha256 and size)" % (path, rel))
        if not ok:
            raise BadArtifact("%s: sha256 does not match manifest.json (corrupt or modified artifact); re-run 'edgeship export'" % p)
    return manifest


def load_inputs(path: str, manifest: Dict[str, Any]) -> Dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as z:
            feeds = {k: z[k] for k in z.files}
    except (OSError, ValueError) as exc:
        raise BadInputs("%s: not a readable .npz (%s)" % (path, exc))
    for spec in manifest["inputs"]:
        name = spec["name"]
        if name not in feeds:
            raise BadInputs("%s: no array named %r (has %s)" % (path, name, sorted(feeds)))
        arr = feeds[name]
        if list(arr.shape) != list(spec["shape"]):
            raise BadInputs("%s: input %r has shape %s, the artifact expects %s" % (path, name, list(arr.shape), spec["shape"]))
        want = np.dtype(spec["dtype"])
        # int8-I/O artifacts take float inputs and quantize them with the tensor's parameters
        float_ok = spec.get("quantization") and arr.dtype.kind == "f"
        if arr.dtype != want and not float_ok:
            raise BadInputs("%s: input %r has dtype %s, the artifact expects %s" % (path, name, arr.dtype, want))
    return feeds


def cpu_model() -> str:
    # x86 lists a numeric "model : 167" before "model name": pick keys by preference
    found = {}  # type: Dict[str, str]
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                key, sep, value = line.partition(":")
                key = key.strip().lower()
                if sep and value.strip() and key not in found:
                    found[key] = value.strip()
    except OSError:
        pass
    for key in ("model name", "hardware", "cpu model", "model"):
        if key in found:
            return found[key]
    if sys.platform == "darwin":
        try:
            out = subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True, check=False, timeout=5)
            if out.stdout.strip():
                return out.stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass
    return platform.processor() or platform.machine()


def environment() -> Dict[str, Any]:
    # "cpu": model name plus the integer-dot features and class that decide INT8 kernels
    cpu = dict(cpu_features())
    cpu["model"] = cpu_model()
    return {
        "cpu": cpu, "platform": platform.platform(), "machine": platform.machine(),
        "python": platform.python_version(), "hostname": socket.gethostname(),
        "cpu_count": os.cpu_count(), "numpy": np.__version__,
    }


def write_json_atomic(path: str, obj: Any) -> None:
    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".result.", suffix=".tmp", dir=d)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def cpu_pressure_us() -> Optional[int]:
    """Linux PSI (kernel 4.20+): microseconds so far in which some runnable task waited for a CPU.

    The runner's own CPU share misses a co-tenant that a short measured loop outran (a freshly
    started process is scheduled ahead of long-running ones); the pressure sees the queue itself.
    None where the kernel has no PSI (older kernels, macOS, some Android builds).
    """
    try:
        with open("/proc/pressure/cpu") as f:
            for line in f:
                if line.startswith("some "):
                    return int(line.rsplit("total=", 1)[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def timed_loop(rt: Any, prepared: Any, min_runs: int, min_seconds: float, max_seconds: float,
               max_runs: int = 0, clock: Any = time.perf_counter_ns) -> "array[int]":
    """Run until min_runs and min_seconds are met (or max_runs reached), or max_seconds passed.

    max_runs bounds very fast models (microseconds per run) so the sample list stays small
    enough for bootstrap statistics; 0 means no bound. Samples go to an int64 array, not a
    list of int objects, so the runner's own bookkeeping barely moves the steady-state peak.
    """
    samples = array("q")
    start = clock()
    min_ns, max_ns = int(min_seconds * 1e9), int(max_seconds * 1e9)
    invoke = rt.invoke
    while True:
        t0 = clock()
        invoke(prepared)
        t1 = clock()
        samples.append(t1 - t0)
        elapsed = t1 - start
        n = len(samples)
        if (n >= min_runs and (elapsed >= min_ns or (max_runs and n >= max_runs))) or elapsed >= max_ns:
            return samples


def find_runtime(manifest: Dict[str, Any], result: Dict[str, Any], **absent: Any) -> Optional[Tuple[Any, str]]:
    """The manifest's runtime class and its version (importing the runtime package), or None
    with ``result`` marked skipped (plus ``absent``) when this device lacks the runtime."""
    try:
        cls = get_runtime(manifest["runtime"])
        return cls, cls.version()
    except RuntimeUnavailable as exc:
        result.update(status="skipped", skip_reason=str(exc), runtime={"name": manifest["runtime"]}, **absent)
        return None


def measure(args: argparse.Namespace, manifest: Dict[str, Any], feeds: Dict[str, np.ndarray],
            options: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    mem = MemoryProbe()
    settings = {
        "threads": args.threads, "warmup_runs": args.warmup_runs, "warmup_seconds": args.warmup_seconds,
        "min_runs": args.min_runs, "min_seconds": args.min_seconds, "max_seconds": args.max_seconds,
        "max_runs": args.max_runs,
    }
    result = {"schema": SCHEMA, "status": "ok", "skip_reason": None, "settings": settings,
              "env": environment()}  # type: Dict[str, Any]
    found = find_runtime(manifest, result, timing=None, memory=None)   # before the baseline: it includes the import
    if found is None:
        return result
    cls, version = found
    baseline = mem.peak_kb()
    model_path = os.path.join(args.artifact, manifest["model_file"])
    rt = cls(model_path, manifest, args.threads, options)
    t0 = time.perf_counter_ns()
    try:
        rt.load()
    except RuntimeUnavailable as exc:
        result.update(status="skipped", skip_reason=str(exc), runtime={"name": manifest["runtime"], "version": version},
                      timing=None, memory=None)
        return result
    load_ns = time.perf_counter_ns() - t0
    try:
        prepared = rt.prepare(feeds)
        t0 = time.perf_counter_ns()
        raw = rt.invoke(prepared)
        first_ns = time.perf_counter_ns() - t0
        outputs = rt.finish(raw)
        init_peak = mem.peak_kb()   # load + the first inference: where arenas are allocated
        reset = mem.reset_peak()
        warm = timed_loop(rt, prepared, args.warmup_runs, args.warmup_seconds, args.max_seconds, args.max_runs)
        # CPU time vs wall time of the measured loop: the invoking thread is always runnable
        # there, so cpu < wall means co-tenants took the CPU away (edgeship.gating.judge)
        # and the system's CPU pressure over the same loop: other tasks queued for a CPU
        p0 = cpu_pressure_us()
        c0, w0 = time.process_time_ns(), time.perf_counter_ns()
        samples = timed_loop(rt, prepared, args.min_runs, args.min_seconds, args.max_seconds, args.max_runs)
        cpu_ns, wall_ns = time.process_time_ns() - c0, time.perf_counter_ns() - w0
        p1 = cpu_pressure_us()
        steady_peak = mem.peak_kb()
        rss = mem.rss()
        result["runtime"] = rt.describe()
    finally:
        rt.close()
    result["timing"] = {
        "load_ns": load_ns, "first_ns": first_ns, "warmup_runs": len(warm), "samples_ns": samples.tolist(),
        "capped": len(samples) < args.min_runs, "cpu_ns": cpu_ns, "wall_ns": wall_ns,
    }
    if p0 is not None and p1 is not None:
        result["timing"]["cpu_pressure_ns"] = (p1 - p0) * 1000
    result["memory"] = dict(
        method=mem.method, baseline_kb=baseline, init_peak_kb=init_peak,
        # without a reset VmHWM still holds the init peak, so it says nothing about steady state
        steady_peak_kb=steady_peak if (reset or not mem.linux) else None,
        hwm_reset=reset, **rss
    )
    if args.outputs:
        tmp = args.outputs + ".tmp.npz"
        np.savez(tmp, **outputs)  # type: ignore[arg-type]  # numpy stubs: **arrays vs allow_pickle
        os.replace(tmp, args.outputs)
    return result


def load_eval_inputs(path: str, manifest: Dict[str, Any]) -> Dict[str, np.ndarray]:
    """A chunk of samples: each input stacked along a new first axis (n, *input shape)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            stacked = {k: z[k] for k in z.files}
    except (OSError, ValueError) as exc:
        raise BadInputs("%s: not a readable .npz (%s)" % (path, exc))
    counts = set()
    for spec in manifest["inputs"]:
        name = spec["name"]
        if name not in stacked:
            raise BadInputs("%s: no array named %r (has %s)" % (path, name, sorted(stacked)))
        arr = stacked[name]
        if arr.ndim < 1 or list(arr.shape[1:]) != list(spec["shape"]):
            raise BadInputs("%s: input %r has shape %s, the artifact expects (n, %s)"
                            % (path, name, list(arr.shape), ", ".join(str(d) for d in spec["shape"])))
        float_ok = spec.get("quantization") and arr.dtype.kind == "f"
        if arr.dtype != np.dtype(spec["dtype"]) and not float_ok:
            raise BadInputs("%s: input %r has dtype %s, the artifact expects %s" % (path, name, arr.dtype, spec["dtype"]))
        counts.add(arr.shape[0])
    if len(counts) != 1 or 0 in counts:
        raise BadInputs("%s: inputs hold different or zero sample counts %s" % (path, sorted(counts)))
    return stacked


def evaluate_batch(args: argparse.Namespace, manifest: Dict[str, Any], stacked: Dict[str, np.ndarray],
                   options: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """Run every sample of the chunk once; write the outputs stacked per output name."""
    result = {"schema": SCHEMA, "status": "ok", "skip_reason": None, "env": environment(),
              "timing": None, "memory": None}  # type: Dict[str, Any]
    found = find_runtime(manifest, result)
    if found is None:
        return result
    cls, version = found
    rt = cls(os.path.join(args.artifact, manifest["model_file"]), manifest, args.threads, options)
    try:
        rt.load()
    except RuntimeUnavailable as exc:
        result.update(status="skipped", skip_reason=str(exc), runtime={"name": manifest["runtime"], "version": version})
        return result
    n = len(next(iter(stacked.values())))
    names = [spec["name"] for spec in manifest["inputs"]]
    collected = {}  # type: Dict[str, List[np.ndarray]]
    layers = LayerCapture() if getattr(args, "layers_out", None) else None
    try:
        for i in range(n):
            feeds = {k: stacked[k][i] for k in names}
            outs = rt.run(feeds)
            for name, arr in outs.items():
                collected.setdefault(name, []).append(np.asarray(arr))
            if layers is not None and layers.reason is None:
                layers.add(rt, feeds, outs)
        result["runtime"] = rt.describe()
    finally:
        rt.close()
    if layers is not None:
        result["layers"] = layers.write(args.layers_out)
    tmp = args.eval_outputs + ".tmp.npz"
    np.savez(tmp, **{k: np.stack(v) for k, v in collected.items()})  # type: ignore[arg-type]
    os.replace(tmp, args.eval_outputs)
    result["eval"] = {"samples": n}
    return result


class LayerCapture:
    """The layers' tensors of every sample, stacked per tensor, and the check that the observed
    run (a debug copy, or the interpreter in preserve-all-tensors mode) computes the shipped
    outputs: ``outputs_max_abs_diff`` over all samples."""

    def __init__(self) -> None:
        self.index = []  # type: List[Dict[str, Any]]
        self.by_name = {}  # type: Dict[str, Dict[str, Any]]
        self.arrays = {}  # type: Dict[str, List[np.ndarray]]
        self.reason = None  # type: Optional[str]
        self.diff = 0.0
        self.samples = 0

    def add(self, rt: Any, feeds: Dict[str, np.ndarray], outs: Dict[str, np.ndarray]) -> None:
        try:
            tensors = rt.intermediates(feeds)
        except NotReported as exc:
            self.reason = str(exc)
            return
        first = self.samples == 0
        self.samples += 1
        for t in tensors:
            if t.get("output"):
                want = np.asarray(outs[t["name"]], np.float64)
                self.diff = max(self.diff, float(np.max(np.abs(np.asarray(t["array"], np.float64) - want))) if want.size else 0.0)
                continue
            arr = np.asarray(t["array"])
            if first:
                self.by_name[t["name"]] = {"key": "t%04d" % len(self.index), "name": t["name"], "node": t.get("node"),
                                           "op_type": t.get("op_type"), "dtype": arr.dtype.name, "shape": list(arr.shape),
                                           "quantization": t.get("quantization"), "min": None, "max": None}
                self.index.append(self.by_name[t["name"]])
            entry = self.by_name.get(t["name"])
            if entry is None or list(arr.shape) != entry["shape"]:
                raise RuntimeRunError("tensor %r changed between samples; its layers cannot be stacked" % t["name"])
            self.arrays.setdefault(entry["key"], []).append(arr)
            # the value range the device saw, summarised here (dequantized: the tensor's real range)
            q = entry["quantization"]
            lo, hi = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 0.0)
            if q:
                lo, hi = (lo - q["zero_point"]) * q["scale"], (hi - q["zero_point"]) * q["scale"]
            entry["min"] = lo if entry["min"] is None else min(entry["min"], lo)
            entry["max"] = hi if entry["max"] is None else max(entry["max"], hi)

    def write(self, path: str) -> Dict[str, Any]:
        if self.reason is not None:
            return {"unreported": self.reason}
        tmp = path + ".tmp.npz"
        np.savez_compressed(tmp, **{k: np.stack(v) for k, v in self.arrays.items()})  # type: ignore[arg-type]
        os.replace(tmp, path)
        return {"tensors": self.index, "outputs_max_abs_diff": self.diff}


def _percentiles_ms(ns: Any) -> Dict[str, float]:
    a = np.asarray(ns, dtype=np.float64)
    p50, p90 = np.percentile(a, [50, 90]) if a.size else (float("nan"), float("nan"))
    return {"p50_ms": float(p50) / 1e6, "p90_ms": float(p90) / 1e6, "mean_ms": float(a.mean()) / 1e6 if a.size else float("nan")}


def summarize_ops(events: List[Any], total_runs: int, measured: int) -> Dict[str, Any]:
    """Per node and per op type, p50/p90 of the time per measured run (events of the first
    run and the warmup are dropped: each node runs once per run, so its last ``measured``
    occurrences are the measured runs'). A node seen a number of times that is not a multiple
    of the runs (a loop body, a truncated profile) is listed but kept out of the totals."""
    per_node = {}  # type: Dict[str, Dict[str, Any]]
    for name, op_type, dur in events:
        per_node.setdefault(name, {"op_type": op_type, "durs": []})["durs"].append(dur)
    totals = np.zeros(measured, dtype=np.int64)
    by_type = {}  # type: Dict[str, Any]
    rows, irregular = [], []
    for order, (name, node) in enumerate(per_node.items()):
        d = np.asarray(node["durs"], dtype=np.int64)
        if measured and len(d) % total_runs == 0:
            k = len(d) // total_runs
            per_run = d[-measured * k:].reshape(measured, k).sum(axis=1)
            totals += per_run
            t = by_type.setdefault(node["op_type"], {"nodes": 0, "per_run": np.zeros(measured, dtype=np.int64)})
            t["nodes"] += 1
            t["per_run"] += per_run
        else:
            per_run = d[-measured:] if measured else d
            irregular.append(name)
        rows.append(dict(name=name, op_type=node["op_type"], order=order, **_percentiles_ms(per_run)))
    total_p50 = _percentiles_ms(totals)["p50_ms"] if measured else float("nan")
    for r in rows:
        r["share"] = r["p50_ms"] / total_p50 if total_p50 else None
    rows.sort(key=lambda r: -r["p50_ms"])
    kept, rest = rows[:OPS_MAX_ROWS], rows[OPS_MAX_ROWS:]
    types = [dict(op_type=k, nodes=v["nodes"], **_percentiles_ms(v["per_run"])) for k, v in by_type.items()]
    types.sort(key=lambda r: -r["p50_ms"])
    return {"ops": kept, "op_types": types, "nodes": len(rows), "runs": measured,
            "total": _percentiles_ms(totals), "other_p50_ms": sum(r["p50_ms"] for r in rest) if rest else 0.0,
            "irregular": irregular}


def profile_ops(args: argparse.Namespace, manifest: Dict[str, Any], feeds: Dict[str, np.ndarray],
                options: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """The timed loop once more with the runtime's profiler on: per-op times, no latency samples."""
    max_runs = min(args.max_runs or OPS_MAX_RUNS, OPS_MAX_RUNS)
    settings = {"threads": args.threads, "warmup_runs": args.warmup_runs, "warmup_seconds": args.warmup_seconds,
                "min_runs": min(args.min_runs, max_runs), "min_seconds": args.min_seconds,
                "max_seconds": args.max_seconds, "max_runs": max_runs}
    result = {"schema": OPS_SCHEMA, "status": "ok", "skip_reason": None, "settings": settings,
              "env": environment()}  # type: Dict[str, Any]
    found = find_runtime(manifest, result)
    if found is None:
        return result
    cls, version = found
    reason = cls.op_times_reason()
    if reason is not None:       # known before running: no timed loop whose numbers nobody gets
        result.update(status="unreported", skip_reason=reason, runtime={"name": manifest["runtime"], "version": version})
        return result
    opts = dict(options or {})
    opts["op_profile"] = os.path.join(os.path.dirname(os.path.abspath(args.out)), "op-profile")
    rt = cls(os.path.join(args.artifact, manifest["model_file"]), manifest, args.threads, opts)
    try:
        rt.load()
    except RuntimeUnavailable as exc:
        result.update(status="skipped", skip_reason=str(exc), runtime={"name": manifest["runtime"], "version": version})
        return result
    try:
        prepared = rt.prepare(feeds)
        rt.invoke(prepared)
        warm = timed_loop(rt, prepared, args.warmup_runs, args.warmup_seconds, args.max_seconds, max_runs)
        samples = timed_loop(rt, prepared, settings["min_runs"], args.min_seconds, args.max_seconds, max_runs)
        result["runtime"] = rt.describe()
        events = rt.op_times()
    finally:
        rt.close()
    result.update(summarize_ops(events, 1 + len(warm) + len(samples), len(samples)))
    # the profiled runs' own wall time: with the latency rounds' median it states the overhead
    result["profiled_run"] = _percentiles_ms(samples.tolist())
    return result


def runtime_modules() -> List[str]:
    """Runtime modules shipped in this package (a bundle carries only the one it needs)."""
    here = os.path.dirname(os.path.abspath(__file__))
    skip = {"__init__", "base", "memory", "runner", "cpuinfo"}
    return sorted(f[:-3] for f in os.listdir(here) if f.endswith(".py") and f[:-3] not in skip and not f.startswith("_"))


def info() -> Dict[str, Any]:
    """What this interpreter offers: environment and, per runtime, its version or why not."""
    runtimes = {}  # type: Dict[str, Dict[str, Any]]
    for name in runtime_modules():
        try:
            runtimes[name] = {"available": True, "version": get_runtime(name).version()}
        except (RuntimeUnavailable, ImportError) as exc:
            runtimes[name] = {"available": False, "reason": str(exc)}
        except Exception as exc:  # noqa: BLE001  a broken install (e.g. a shared library that fails to load)
            runtimes[name] = {"available": False, "reason": "broken: %s: %s" % (type(exc).__name__, exc)}
    return {"env": environment(), "executable": sys.executable, "runtimes": runtimes}


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="edgeship-runner", description=__doc__.splitlines()[0])
    p.add_argument("--info", action="store_true", help="print the environment and available runtimes as JSON")
    p.add_argument("--artifact", help="artifact directory (with manifest.json)")
    p.add_argument("--inputs", help="inputs.npz keyed by input name")
    p.add_argument("--out", help="where to write result.json")
    p.add_argument("--outputs", help="optionally write the outputs here (.npz)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--warmup-runs", type=int, default=10)
    p.add_argument("--warmup-seconds", type=float, default=1.0)
    p.add_argument("--min-runs", type=int, default=100)
    p.add_argument("--min-seconds", type=float, default=1.0)
    p.add_argument("--max-seconds", type=float, default=30.0)
    p.add_argument("--max-runs", type=int, default=10000, help="stop after this many runs once min_runs is met (0: no bound)")
    p.add_argument("--options", help="runtime options as JSON")
    p.add_argument("--eval-inputs", help="batch mode: a chunk of samples (.npz, inputs stacked on axis 0), each run once")
    p.add_argument("--eval-outputs", help="batch mode: where to write the outputs stacked per output name (.npz)")
    p.add_argument("--layers-out", help="batch mode: also write the layers' tensors of every sample (.npz)")
    p.add_argument("--op-profile", action="store_true", help="per-op times from the runtime's profiler (a separate "
                   "run: never latency samples)")
    args = p.parse_args(argv)
    if bool(args.eval_inputs) != bool(args.eval_outputs):
        p.error("--eval-inputs and --eval-outputs go together")
    if args.layers_out and not args.eval_inputs:
        p.error("--layers-out needs batch mode (--eval-inputs)")
    if args.op_profile and args.eval_inputs:
        p.error("--op-profile and --eval-inputs are separate runs")
    if not args.info:
        need = ("artifact", "out") if args.eval_inputs else ("artifact", "inputs", "out")
        missing = [o for o in need if not getattr(args, o)]
        if missing:
            p.error("the following arguments are required: %s" % ", ".join("--" + m for m in missing))
    return args


def _fail(message: str, code: int) -> int:
    print("edgeship-runner: error: %s" % " ".join(message.split()), file=sys.stderr)
    return code


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    if args.info:
        print(json.dumps(info()))
        return 0
    try:
        manifest = load_manifest(args.artifact)
    except BadArtifact as exc:
        return _fail(str(exc), EXIT_BAD_ARTIFACT)
    try:
        if args.eval_inputs:
            feeds = load_eval_inputs(args.eval_inputs, manifest)
        else:
            feeds = load_inputs(args.inputs, manifest)
        options = json.loads(args.options) if args.options else None
    except BadInputs as exc:
        return _fail(str(exc), EXIT_BAD_INPUTS)
    except ValueError as exc:
        return _fail("--options is not valid JSON (%s)" % exc, EXIT_BAD_INPUTS)
    try:
        if args.eval_inputs:
            result = evaluate_batch(args, manifest, feeds, options)
        elif args.op_profile:
            result = profile_ops(args, manifest, feeds, options)
        else:
            result = measure(args, manifest, feeds, options)
    except RuntimeLoadError as exc:
        return _fail(str(exc), EXIT_BAD_ARTIFACT)
    except RuntimeRunError as exc:
        return _fail(str(exc), EXIT_RUNTIME)
    except Exception as exc:  # noqa: BLE001  a backend's own exception type escaping load/invoke
        first = str(exc).splitlines()[0] if str(exc) else ""
        return _fail("%s failed: %s: %s" % (manifest["runtime"], type(exc).__name__, first), EXIT_RUNTIME)
    write_json_atomic(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
