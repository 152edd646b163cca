"""ONNX INT8 recipes per CPU class: fidelity natively and under qemu -cpu Haswell, speed natively.

    .venv/bin/python benchmarks/int8_recipes.py [--models demo,mobilenet,encoder] [--json out.json]

For each model, every recipe of onnxruntime's space that edgeship's classes use (u8s8,
u8s8+reduce_range, u8u8, s8s8; dynamic: u8s8, u8s8+reduce_range, u8u8) is built through
OnnxExporter's own quantization code, then run on held-out inputs (not the calibration
samples):

- natively on this host (its CPU class is printed): cosine vs the PyTorch FP32 reference, and
  the single-thread median latency vs the FP32 ONNX model (interleaved with it);
- under ``qemu-x86_64-static -cpu Haswell`` (AVX2, no VNNI): onnxruntime's real AVX2 kernels,
  so the x86-avx2 class's numerics, saturation included. No timing there (TCG).

One run, kept short: the machine is shared. Numbers go to docs/export.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

STATIC = ("u8s8", "u8s8+reduce_range", "u8u8", "s8s8")
DYNAMIC = ("u8s8", "u8s8+reduce_range", "u8u8")


def _recipe(name: str) -> Any:
    from edgeship.exporting.cpuclass import OrtRecipe

    act = "int8" if name == "s8s8" else "uint8"
    return OrtRecipe(name, act, "uint8" if name == "u8u8" else "int8", name.endswith("reduce_range"), "benchmark")


def demo_job() -> tuple[Any, list[dict[str, np.ndarray]]]:
    from edgeship.exporting.pipeline import build_job
    from edgeship.types import Target
    from tests.conftest import make_config

    cfg = make_config(Path(tempfile.mkdtemp(prefix="edgeship-recipes-")))
    job = build_job(cfg, Target.ONNX)
    from edgeship.demo import evaluation_data

    batch = next(iter(evaluation_data()))["image"]
    return job, [{"image": batch[i:i + 1]} for i in range(16)]


def mobilenet_job() -> tuple[Any, list[dict[str, np.ndarray]]]:
    from benchmarks.mobilenet import mobilenet_job as mj
    from benchmarks.mobilenet import synthetic_images

    job, _ = mj(32)
    return job, [{"image": x} for x in synthetic_images(4, seed=99)]


def encoder_job() -> tuple[Any, list[dict[str, np.ndarray]]]:
    from edgeship.exporting.pipeline import build_job
    from edgeship.types import Target
    from tests.conftest import tiny_config
    from tests.models import heldout_feeds

    cfg = tiny_config(Path(tempfile.mkdtemp(prefix="edgeship-recipes-")), "tiny_encoder")
    return build_job(cfg, Target.ONNX), heldout_feeds("tiny_encoder", 8)


MODELS = {"demo": (demo_job, "static"), "mobilenet": (mobilenet_job, "static"), "encoder": (encoder_job, "dynamic")}


def interleaved_ms(paths: dict[str, Path], feed: dict[str, np.ndarray], runs: int) -> dict[str, float]:
    from edgeship.exporters._onnx_recipes import _session

    sess = {k: _session(p) for k, p in paths.items()}
    for s in sess.values():
        for _ in range(5):
            s.run(None, feed)
    times: dict[str, list[float]] = {k: [] for k in sess}
    for _ in range(runs):
        for k, s in sess.items():
            t = time.perf_counter_ns()
            s.run(None, feed)
            times[k].append((time.perf_counter_ns() - t) / 1e6)
    return {k: statistics.median(v) for k, v in times.items()}


def bench(model: str, runs: int, emulate: bool) -> dict[str, Any]:
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from edgeship.exporters._onnx_recipes import emulator, run_emulated, run_native
    from edgeship.exporters.onnx import OnnxExporter
    from edgeship.metrics import fidelity
    from edgeship.model.reference import run_reference

    make, kind = MODELS[model]
    job, feeds = make()
    ref = [run_reference(job.model, f, job.inputs) for f in feeds]
    ex = OnnxExporter()
    with tempfile.TemporaryDirectory(prefix="edgeship-recipes-") as tmp:
        d = Path(tmp)
        fp32 = d / "fp32.onnx"
        ex._export_fp32(job, fp32)
        paths: dict[str, Path] = {}
        if kind == "static":
            pre = d / "pre.onnx"
            quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
            samples = job.calibration_samples()
            for name in STATIC:
                paths[name] = d / f"{name}.onnx"
                ex._int8_static(job, pre, paths[name], samples, _recipe(name))
        else:
            for name in DYNAMIC:
                paths[name] = d / f"{name}.onnx"
                ex._int8_dynamic(fp32, paths[name], _recipe(name))
        native = run_native(paths, feeds, None)
        ms = interleaved_ms({"fp32": fp32, **paths}, feeds[0], runs)
        haswell = run_emulated(paths, feeds) if emulate and emulator() else {}
    out: dict[str, Any] = {"kind": kind, "samples": len(feeds), "fp32_ms": ms["fp32"], "recipes": {}}
    for name in paths:
        row = {"native_cosine_mean": fidelity(ref, native[name]["outputs"])["cosine_mean"],
               "native_cosine_min": fidelity(ref, native[name]["outputs"])["cosine_min"],
               "native_ms": ms[name], "native_speedup_vs_fp32": ms["fp32"] / ms[name]}
        if name in haswell:
            f = fidelity(ref, haswell[name]["outputs"])
            row.update(haswell_cosine_mean=f["cosine_mean"], haswell_cosine_min=f["cosine_min"])
        out["recipes"][name] = row
    return out


def main() -> int:
    from edgeship.runtimes.cpuinfo import cpu_features
    from edgeship.runtimes.runner import cpu_model

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="demo,mobilenet,encoder")
    p.add_argument("--runs", type=int, default=40, help="interleaved timed runs per recipe (native)")
    p.add_argument("--no-emulation", action="store_true")
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    host = cpu_features()
    res: dict[str, Any] = {"host": {"model": cpu_model(), **host}, "models": {}}
    print(f"host: {cpu_model()} [{host['cpu_class']}] {' '.join(host['features'])}")
    for model in args.models.split(","):
        r = bench(model, args.runs, not args.no_emulation)
        res["models"][model] = r
        print(f"\n{model} ({r['kind']}, {r['samples']} held-out samples), fp32 {r['fp32_ms']:.3f} ms")
        print(f"  {'recipe':<20}{'cos native':>12}{'cos Haswell':>13}{'min Haswell':>13}{'speed native':>14}")
        for name, row in r["recipes"].items():
            hw = f"{row['haswell_cosine_mean']:.5f}" if "haswell_cosine_mean" in row else "-"
            hwm = f"{row['haswell_cosine_min']:.5f}" if "haswell_cosine_min" in row else "-"
            print(f"  {name:<20}{row['native_cosine_mean']:>12.5f}{hw:>13}{hwm:>13}{row['native_speedup_vs_fp32']:>13.2f}x")
    if args.json:
        args.json.write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
