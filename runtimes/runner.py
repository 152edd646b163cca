"""The standalone runner: load one artifact, feed inputs, measure, write result.json.

Runs on the device itself (Python >= 3.8, numpy and one runtime; no torch, no edgeship):
``python3 -m <pkg>.runner --artifact DIR --inputs inputs.npz --out result.json``.

Method (anchored on LiteRT benchmark_model and pyperf): load/init time; the first (cold)
inference; warmup for max(warmup_runs, warmup_seconds); measured runs until
max(min_runs, min_seconds), capped at max_seconds. Every sample is kept, in ns, from
time.perf_counter_ns on the device. Exit codes: 0 ok (or skipped: runtime unavailable),
3 bad artifact or inputs, 4 the runtime failed to load or run. result.json is written
atomically and only on success.
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
from typing import Any, Dict, List, Optional

import numpy as np

from .base import RuntimeLoadError, RuntimeRunError, RuntimeUnavailable, get_runtime
from .memory import MemoryProbe

SCHEMA = "edgeship.result/1"
EXIT_BAD_INPUT = 3
EXIT_RUNTIME = 4


class BadInput(Exception):
    pass


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def load_manifest(artifact: str) -> Dict[str, Any]:
    path = os.path.join(artifact, "manifest.json")
    try:
        with open(path) as fh:
            manifest = json.load(fh)
    except (OSError, ValueError) as exc:
        raise BadInput("%s: cannot read manifest (%s)" % (path, exc))
    for rel, meta in manifest.get("files", {}).items():
        p = os.path.join(artifact, rel)
        if not os.path.isfile(p):
            raise BadInput("%s: listed in manifest.json but missing" % p)
        if os.path.getsize(p) != meta["size"] or _sha256(p) != meta["sha256"]:
            raise BadInput("%s: sha256 does not match manifest.json (corrupt or modified artifact)" % p)
    return manifest


def load_inputs(path: str, manifest: Dict[str, Any]) -> Dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as z:
            feeds = {k: z[k] for k in z.files}
    except (OSError, ValueError) as exc:
        raise BadInput("%s: not a readable .npz (%s)" % (path, exc))
    for spec in manifest["inputs"]:
        name = spec["name"]
        if name not in feeds:
            raise BadInput("%s: no array named %r (has %s)" % (path, name, sorted(feeds)))
        arr = feeds[name]
        if list(arr.shape) != list(spec["shape"]):
            raise BadInput("%s: input %r has shape %s, the artifact expects %s" % (path, name, list(arr.shape), spec["shape"]))
        want = np.dtype(spec["dtype"])
        # int8-I/O artifacts take float inputs and quantize them with the tensor's parameters
        float_ok = spec.get("quantization") and arr.dtype.kind == "f"
        if arr.dtype != want and not float_ok:
            raise BadInput("%s: input %r has dtype %s, the artifact expects %s" % (path, name, arr.dtype, want))
    return feeds


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                key = line.split(":")[0].strip().lower()
                if key in ("model name", "hardware", "cpu model", "model"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    if sys.platform == "darwin":
        try:
            out = subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True, timeout=5)
            if out.stdout.strip():
                return out.stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass
    return platform.processor() or platform.machine()


def environment() -> Dict[str, Any]:
    return {
        "cpu": cpu_model(), "platform": platform.platform(), "machine": platform.machine(),
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


def timed_loop(rt: Any, prepared: Any, min_runs: int, min_seconds: float, max_seconds: float,
               max_runs: int = 0, clock: Any = time.perf_counter_ns) -> List[int]:
    """Run until min_runs and min_seconds are met (or max_runs reached), or max_seconds passed.

    max_runs bounds very fast models (microseconds per run) so the sample list stays small
    enough for bootstrap statistics; 0 means no bound.
    """
    samples = []  # type: List[int]
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


def measure(args: argparse.Namespace, manifest: Dict[str, Any], feeds: Dict[str, np.ndarray]) -> Dict[str, Any]:
    mem = MemoryProbe()
    settings = {
        "threads": args.threads, "warmup_runs": args.warmup_runs, "warmup_seconds": args.warmup_seconds,
        "min_runs": args.min_runs, "min_seconds": args.min_seconds, "max_seconds": args.max_seconds,
        "max_runs": args.max_runs,
    }
    result = {"schema": SCHEMA, "status": "ok", "skip_reason": None, "settings": settings,
              "env": environment()}  # type: Dict[str, Any]
    try:
        cls = get_runtime(manifest["runtime"])
        version = cls.version()
    except RuntimeUnavailable as exc:
        result.update(status="skipped", skip_reason=str(exc), runtime={"name": manifest["runtime"]},
                      timing=None, memory=None)
        return result
    baseline = mem.peak_kb()
    model_path = os.path.join(args.artifact, manifest["model_file"])
    rt = cls(model_path, manifest, args.threads, json.loads(args.options) if args.options else None)
    t0 = time.perf_counter_ns()
    try:
        rt.load()
    except RuntimeUnavailable as exc:
        result.update(status="skipped", skip_reason=str(exc), runtime={"name": manifest["runtime"], "version": version},
                      timing=None, memory=None)
        return result
    load_ns = time.perf_counter_ns() - t0
    prepared = rt.prepare(feeds)
    t0 = time.perf_counter_ns()
    raw = rt.invoke(prepared)
    first_ns = time.perf_counter_ns() - t0
    outputs = rt.finish(raw)
    init_peak = mem.peak_kb()
    reset = mem.reset_peak()
    warm = timed_loop(rt, prepared, args.warmup_runs, args.warmup_seconds, args.max_seconds, args.max_runs)
    samples = timed_loop(rt, prepared, args.min_runs, args.min_seconds, args.max_seconds, args.max_runs)
    steady_peak = mem.peak_kb()
    result["runtime"] = rt.describe()
    result["timing"] = {
        "load_ns": load_ns, "first_ns": first_ns, "warmup_runs": len(warm), "samples_ns": samples,
        "capped": len(samples) < args.min_runs,
    }
    result["memory"] = dict(
        method=mem.method, baseline_kb=baseline, init_peak_kb=init_peak,
        steady_peak_kb=steady_peak if (reset or not mem.linux) else None,
        hwm_reset=reset, **mem.rss(),
    )
    rt.close()
    if args.outputs:
        tmp = args.outputs + ".tmp.npz"
        np.savez(tmp, **outputs)
        os.replace(tmp, args.outputs)
    return result


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="edgeship-runner", description=__doc__.splitlines()[0])
    p.add_argument("--artifact", required=True, help="artifact directory (with manifest.json)")
    p.add_argument("--inputs", required=True, help="inputs.npz keyed by input name")
    p.add_argument("--out", required=True, help="where to write result.json")
    p.add_argument("--outputs", help="optionally write the outputs here (.npz)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--warmup-runs", type=int, default=10)
    p.add_argument("--warmup-seconds", type=float, default=1.0)
    p.add_argument("--min-runs", type=int, default=100)
    p.add_argument("--min-seconds", type=float, default=1.0)
    p.add_argument("--max-seconds", type=float, default=30.0)
    p.add_argument("--max-runs", type=int, default=10000, help="stop after this many runs once min_runs is met (0: no bound)")
    p.add_argument("--options", help="runtime options as JSON")
    return p.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    try:
        manifest = load_manifest(args.artifact)
        feeds = load_inputs(args.inputs, manifest)
    except BadInput as exc:
        print("edgeship-runner: error: %s" % exc, file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        result = measure(args, manifest, feeds)
    except RuntimeLoadError as exc:
        print("edgeship-runner: error: %s" % exc, file=sys.stderr)
        return EXIT_BAD_INPUT
    except RuntimeRunError as exc:
        print("edgeship-runner: error: %s" % exc, file=sys.stderr)
        return EXIT_RUNTIME
    except Exception as exc:  # a backend's own exception type escaping load/invoke
        print("edgeship-runner: error: %s failed: %s: %s" % (manifest["runtime"], type(exc).__name__, str(exc).splitlines()[0] if str(exc) else ""), file=sys.stderr)
        return EXIT_RUNTIME
    write_json_atomic(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
