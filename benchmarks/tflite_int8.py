"""TFLite INT8 vs FP32 on a MobileNetV2, and our runner vs litert-benchmark, in one run.

1. Exports MobileNetV2 (benchmarks/mobilenet.py ``build_mobilenet_v2``, 1x3x224x224) to
   tflite-fp32 and tflite-int8 (PT2E static, per-channel, calibrated on synthetic images), in a child process so torch
   does not share the measuring process.
2. Single-thread latency of both through our runner (runtimes/runner.py in a fresh interpreter
   via the local device, exactly as `edgeship profile` runs it) -> INT8/FP32 speedup and size
   ratio. Goals: >= 1.6x faster, <= 0.28x the size. Also printed: the ops of the int8 graph
   still in float, and the size the int8 file would have without shared quantization vectors.
3. The same artifacts and thread count through `litert-benchmark` (ai-edge-litert's CLI), rounds
   interleaved with ours so machine drift hits both. Goal: medians within 5%.

    .venv/bin/python benchmarks/tflite_int8.py [--threads 1] [--rounds 3] [--runs 100] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
LITERT_BENCHMARK = Path(sys.executable).parent / "litert-benchmark"


def export(out: Path, n_calib: int) -> dict[str, Any]:
    from benchmarks.mobilenet import mobilenet_job
    from edgeship.artifact.manifest import read_manifest
    from edgeship.exporters.tflite import TFLiteExporter
    from edgeship.types import Precision

    job, source = mobilenet_job(n_calib)
    arts = {}
    for p in (Precision.FP32, Precision.INT8):
        m = TFLiteExporter().export(job, p, out / f"tflite-{p}")
        arts[p.value] = {"dir": str(out / f"tflite-{p}"), "size_bytes": m.size_bytes,
                         "export_cosine_min": m.recipe["fidelity_check"]["cosine_min"]}
    int8 = read_manifest(out / "tflite-int8")
    return {"network": source, "artifacts": arts, "integer_graph": int8.recipe["integer_graph"],
            "serialization": int8.recipe["serialization"],
            "int8_unshared_bytes": _unshared_size(out / "tflite-int8" / "model.tflite")}


def _unshared_size(path: Path) -> int:
    """The int8 file as the schema's own writer packs it: every quantization vector written out."""
    from edgeship.exporters import _tflite_fb as fb

    return len(fb.pack(fb.read(path), share=False)[0])


def runner_median_ms(artifact: Path, feeds: dict[str, np.ndarray], threads: int, runs: int) -> float:
    from edgeship.artifact.runner_files import RUNNER_PACKAGE, write_runner_package
    from edgeship.devices.local import LocalDevice

    with tempfile.TemporaryDirectory() as tmp:
        b = Path(tmp)
        write_runner_package(b, "litert")
        np.savez(b / "inputs.npz", **feeds)
        argv = [sys.executable, "-m", f"{RUNNER_PACKAGE}.runner", "--artifact", str(artifact),
                "--inputs", "inputs.npz", "--out", "result.json", "--threads", str(threads),
                "--warmup-runs", "10", "--warmup-seconds", "0.5", "--min-runs", str(runs),
                "--min-seconds", "0", "--max-runs", str(runs), "--max-seconds", "120"]
        with LocalDevice() as dev:
            run = dev.run(argv, timeout=600, cwd=tmp)
        if run.returncode != 0:
            raise SystemExit(f"runner failed: {run.stderr.strip()}")
        return statistics.median(json.loads((b / "result.json").read_text())["timing"]["samples_ns"]) / 1e6


def litert_benchmark_median_ms(model: Path, threads: int, runs: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "lb.json"
        argv = [str(LITERT_BENCHMARK), "--model", str(model), "--num_threads", str(threads),
                "--num_runs", str(runs), "--warmup_runs", "10", "--result_json", str(out)]
        run = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)
        if run.returncode != 0 or not out.exists():
            raise SystemExit(f"litert-benchmark failed ({run.returncode}): {run.stderr.strip()[-500:]}")
        return float(json.loads(out.read_text())["latency"]["median_ms"])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--runs", type=int, default=100, help="measured runs per round and side")
    p.add_argument("--calibration-samples", type=int, default=16)
    p.add_argument("--json", type=Path, help="also write the results here")
    p.add_argument("--export-only", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.export_only:
        print(json.dumps(export(args.export_only, args.calibration_samples)))
        return 0
    os.environ.setdefault("EDGESHIP_CACHE_DIR", str(ROOT / "build" / "cache"))
    with tempfile.TemporaryDirectory(prefix="edgeship-tflite-bench-") as tmp:
        exp = json.loads(subprocess.run([sys.executable, __file__, "--export-only", tmp], check=True,
                                        capture_output=True, text=True).stdout.strip().splitlines()[-1])
        feeds = {"image": np.random.default_rng(1).standard_normal((1, 3, 224, 224)).astype(np.float32)}
        ours: dict[str, list[float]] = {"fp32": [], "int8": []}
        tool: dict[str, list[float]] = {"fp32": [], "int8": []}
        for _ in range(args.rounds):
            for prec, a in exp["artifacts"].items():
                ours[prec].append(runner_median_ms(Path(a["dir"]), feeds, args.threads, args.runs))
                tool[prec].append(litert_benchmark_median_ms(Path(a["dir"]) / "model.tflite", args.threads, args.runs))
    med = {k: {"runner_ms": statistics.median(ours[k]), "litert_benchmark_ms": statistics.median(tool[k])} for k in ours}
    sizes = {k: a["size_bytes"] for k, a in exp["artifacts"].items()}
    res = {
        "network": exp["network"], "threads": args.threads, "rounds": args.rounds, "runs_per_round": args.runs,
        "sizes_bytes": sizes, "export_cosine_min": {k: a["export_cosine_min"] for k, a in exp["artifacts"].items()},
        "medians_ms": med, "rounds_ms": {"runner": ours, "litert_benchmark": tool},
        "int8_speedup": med["fp32"]["runner_ms"] / med["int8"]["runner_ms"],
        "int8_size_ratio": sizes["int8"] / sizes["fp32"],
        "runner_vs_tool": {k: v["runner_ms"] / v["litert_benchmark_ms"] for k, v in med.items()},
    }
    res["int8_graph"] = {"integer_graph": exp["integer_graph"], "serialization": exp["serialization"],
                         "size_ratio_unshared": exp["int8_unshared_bytes"] / sizes["fp32"]}
    res["goals"] = {"speedup_ge_1.6": res["int8_speedup"] >= 1.6, "size_le_0.28": res["int8_size_ratio"] <= 0.28,
                    "runner_within_5pct": all(abs(r - 1) <= 0.05 for r in res["runner_vs_tool"].values())}
    print(f"{res['network']}, {args.threads} thread(s), {args.rounds} interleaved rounds x {args.runs} runs")
    for k in ("fp32", "int8"):
        print(f"  tflite-{k:<5} {sizes[k] / 1e6:6.2f} MB  runner {med[k]['runner_ms']:8.3f} ms  "
              f"litert-benchmark {med[k]['litert_benchmark_ms']:8.3f} ms  ratio {res['runner_vs_tool'][k]:.3f}")
    print(f"  int8 speedup {res['int8_speedup']:.2f}x (goal >= 1.6), size {res['int8_size_ratio']:.3f}x (goal <= 0.28)")
    g, ser = exp["integer_graph"], exp["serialization"]
    print(f"  int8 graph: float ops {g['float_ops'] or 'none'}, internal (de)quantize ops {g['requantize_ops']}; "
          f"{ser['shared']} of {ser['quantization_vectors']} quantization vectors shared "
          f"(written out unshared: {res['int8_graph']['size_ratio_unshared']:.3f}x)")
    print(f"  goals: {res['goals']}")
    if args.json:
        args.json.write_text(json.dumps(res, indent=2) + "\n")
    return 0 if all(res["goals"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
