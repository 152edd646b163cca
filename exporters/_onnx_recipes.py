"""Measure ORT INT8 candidate recipes on a CPU of the target class, and choose one.

Fidelity (cosine against the FP32 reference on calibration samples) decides first, speed
second. Numbers count only when they come from a CPU of the target class:

- ``native``: this host is of that class; fidelity and speed (median vs FP32) are measured;
- ``emulated``: the class is x86-avx2, this host is x86-64 and ``qemu-x86_64-static`` is
  installed: onnxruntime runs under ``-cpu Haswell`` (AVX2, no VNNI), so its real AVX2 kernels
  compute the outputs, saturation included; numerics only, TCG timing means nothing;
- otherwise ``not measured``: the documented order of preference decides, and says so.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgeship.exporting.cpuclass import OrtRecipe

TIE = 1e-4                      # cosine_mean within this of the best counts as a tie
QEMU = "qemu-x86_64-static"
QEMU_CPU = "Haswell"            # AVX2 + FMA, no AVX-512, no VNNI
EMULATION_TIMEOUT_S = float(os.environ.get("EDGESHIP_QEMU_TIMEOUT_S", "900"))
SPEED_SECONDS = 0.3

# Runs under qemu with the same interpreter: ORT defaults as the runner uses them, 1 thread.
_EMULATED = """\
import json, sys
import numpy as np
import onnxruntime as ort
spec = json.load(open(sys.argv[1]))
feeds = np.load(spec["feeds"])
for name, path in spec["models"].items():
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    outs = {}
    for i in range(spec["samples"]):
        feed = {k: feeds["s%d__%s" % (i, k)] for k in spec["inputs"]}
        for j, arr in enumerate(sess.run(None, feed)):
            outs["s%d__%d" % (i, j)] = arr
    np.savez(spec["out"] + "/" + name + ".npz", **outs)
print("ok")
"""


def emulator() -> str | None:
    """Path of qemu-x86_64-static when this x86-64 Linux host can emulate an AVX2 CPU."""
    import platform

    from edgeship.runtimes.cpuinfo import normalize_arch

    if normalize_arch(platform.machine()) != "x86_64" or not sys.platform.startswith("linux"):
        return None
    return shutil.which(QEMU)


def how_measurable(cpu_class: str) -> str:
    """``native`` | ``emulated`` | ``none`` for candidates built for ``cpu_class`` on this host."""
    from edgeship.runtimes.cpuinfo import cpu_features

    if cpu_features()["cpu_class"] == cpu_class:
        return "native"
    if cpu_class == "x86-avx2" and emulator() is not None:
        return "emulated"
    return "none"


def _session(path: Path) -> Any:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def _median_ms(sess: Any, feed: dict[str, np.ndarray]) -> float:
    for _ in range(3):
        sess.run(None, feed)
    times: list[float] = []
    end = time.perf_counter() + SPEED_SECONDS
    while len(times) < 10 or (time.perf_counter() < end and len(times) < 500):
        t0 = time.perf_counter_ns()
        sess.run(None, feed)
        times.append((time.perf_counter_ns() - t0) / 1e6)
    return float(np.median(times))


def run_native(paths: dict[str, Path], feeds: Sequence[dict[str, np.ndarray]], fp32: Path | None) -> dict[str, Any]:
    """Outputs and speed of each candidate on this host."""
    out: dict[str, Any] = {}
    fp32_ms = _median_ms(_session(fp32), feeds[0]) if fp32 is not None else None
    for name, path in paths.items():
        sess = _session(path)
        got = [sess.run(None, f) for f in feeds]
        ms = _median_ms(sess, feeds[0])
        out[name] = {"outputs": got, "median_ms": ms,
                     "speedup_vs_fp32": round(fp32_ms / ms, 3) if fp32_ms else None}
    return out


def run_emulated(paths: dict[str, Path], feeds: Sequence[dict[str, np.ndarray]]) -> dict[str, Any]:
    """Outputs of each candidate from onnxruntime under ``qemu-x86_64-static -cpu Haswell``.

    One subprocess for all candidates (importing ORT under TCG takes ~30 s). Raises
    RuntimeError with the reason when the emulator fails or times out.
    """
    qemu = emulator()
    if qemu is None:
        raise RuntimeError(f"{QEMU} not found (apt-get install qemu-user-static)")
    with tempfile.TemporaryDirectory(prefix="edgeship-qemu-") as tmp:
        arrays = {f"s{i}__{k}": np.asarray(v) for i, f in enumerate(feeds) for k, v in f.items()}
        np.savez(Path(tmp) / "feeds.npz", **arrays)  # type: ignore[arg-type]
        spec = {"feeds": str(Path(tmp) / "feeds.npz"), "out": tmp, "samples": len(feeds),
                "inputs": list(feeds[0]), "models": {f"m{i}": str(p) for i, p in enumerate(paths.values())}}
        (Path(tmp) / "spec.json").write_text(json.dumps(spec))
        script = Path(tmp) / "run.py"
        script.write_text(_EMULATED)
        argv = [qemu, "-cpu", QEMU_CPU, sys.executable, str(script), str(Path(tmp) / "spec.json")]
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=EMULATION_TIMEOUT_S, check=False,
                                  env={**os.environ, "OMP_NUM_THREADS": "1"})
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"{QEMU} -cpu {QEMU_CPU} timed out after {EMULATION_TIMEOUT_S:.0f} s "
                               "(EDGESHIP_QEMU_TIMEOUT_S raises it)") from None
        if proc.returncode != 0:
            lines = [ln for ln in proc.stderr.splitlines() if ln.strip() and "TCG doesn't support" not in ln]
            raise RuntimeError(f"{QEMU} -cpu {QEMU_CPU} exited {proc.returncode}: {lines[-1] if lines else ''}")
        out: dict[str, Any] = {}
        for i, name in enumerate(paths):
            with np.load(Path(tmp) / f"m{i}.npz") as z:
                n_out = len({k.split("__")[1] for k in z.files})
                out[name] = {"outputs": [[z[f"s{s}__{j}"] for j in range(n_out)] for s in range(len(feeds))],
                             "median_ms": None, "speedup_vs_fp32": None}
        return out


def measure_and_choose(
    cpu_class: str, candidates: Sequence[OrtRecipe], paths: dict[str, Path],
    feeds: Sequence[dict[str, np.ndarray]], reference: Sequence[Sequence[np.ndarray]], fp32: Path | None,
) -> tuple[OrtRecipe, str, list[dict[str, Any]]]:
    """Measure every candidate where a CPU of ``cpu_class`` is at hand; return (chosen, why, records)."""
    from edgeship.metrics import fidelity

    mode = how_measurable(cpu_class)
    runs: dict[str, Any] = {}
    failure = None
    if mode == "native":
        runs = run_native(paths, feeds, fp32)
        how = f"native: this host is {cpu_class}"
    elif mode == "emulated":
        try:
            runs = run_emulated(paths, feeds)
        except RuntimeError as exc:
            failure = str(exc)
        how = f"emulated: onnxruntime under {QEMU} -cpu {QEMU_CPU} (AVX2, no VNNI); numerics only, no timing"
    else:
        how = f"not measured: this host is not {cpu_class} and cannot emulate it"
    if failure:
        how = f"not measured: {failure}"
    records: list[dict[str, Any]] = []
    for c in candidates:
        rec: dict[str, Any] = {"recipe": c.name, "reduce_range": c.reduce_range, "activation_type": c.activation_type,
                               "weight_type": c.weight_type, "measured": how,
                               "samples": len(feeds) if c.name in runs else 0}
        if c.name in runs:
            fid = fidelity(reference, runs[c.name]["outputs"])
            rec.update(cosine_mean=fid["cosine_mean"], cosine_min=fid["cosine_min"],
                       top1_agreement=fid["top1_agreement"], median_ms=runs[c.name]["median_ms"],
                       speedup_vs_fp32=runs[c.name]["speedup_vs_fp32"])
        records.append(rec)
    measured = [r for r in records if "cosine_mean" in r]
    if not measured:
        chosen = candidates[0]
        why = (f"{chosen.why}. Not measured on an {cpu_class} CPU ({how.removeprefix('not measured: ')}): "
               "chosen by ORT's documented rule (first candidate)")
        return chosen, why, records
    best = max(r["cosine_mean"] for r in measured)
    ties = [r for r in measured if r["cosine_mean"] >= best - TIE]
    if len(ties) > 1 and all(r.get("median_ms") for r in ties):
        win = min(ties, key=lambda r: r["median_ms"])
        rule = f"fidelity tie within {TIE:g} cosine, fastest on this {cpu_class} host"
    else:
        win = ties[0]    # records keep the documented order
        rule = ("best cosine on calibration samples" if len(ties) == 1
                else f"fidelity tie within {TIE:g} cosine, documented preference (speed not measured on {cpu_class})")
    chosen = next(c for c in candidates if c.name == win["recipe"])
    head = f"Chosen of {len(candidates)} by {rule}" if len(candidates) > 1 else "The only candidate for this class"
    why = f"{chosen.why}. {head} ({how}): cosine {win['cosine_mean']:.5f}"
    return chosen, why, records
