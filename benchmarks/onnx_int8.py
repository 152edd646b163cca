"""ONNX INT8 vs FP32 on a MobileNetV2 (224x224): single-thread latency and size, one run.

Goal (issue 2): INT8 >= 1.7x faster than FP32 and <= 0.27x its size.

    .venv/bin/python benchmarks/onnx_int8.py [--runs 60] [--calibration-samples 32] [--json out.json]

Both artifacts go through the real exporter (OnnxExporter.export: torch.onnx.export, QDQ
static quantization with the configured/auto activation type, validation, manifest). Latency
is measured with onnxruntime, 1 intra-op thread, sequential execution, the two sessions
interleaved run by run (so drift in machine load hits both alike); we report medians.
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def export(out: Path, n_calib: int, activation: str) -> dict[str, Any]:
    from benchmarks.mobilenet import SHAPE, build_mobilenet_v2, synthetic_images
    from edgeship.calibration import Sample
    from edgeship.config import InputSpec, QuantizationConfig, TargetConfig
    from edgeship.exporters.base import ExportJob
    from edgeship.exporters.onnx import OnnxExporter
    from edgeship.types import Precision

    model = build_mobilenet_v2()
    samples = [Sample({"image": x}) for x in synthetic_images(n_calib)]
    job = ExportJob(model=model, model_name="mobilenet_v2", inputs=(InputSpec(name="image", shape=SHAPE),),
                    outputs=("logits",), example_inputs=samples[0].inputs,
                    quantization=QuantizationConfig(activation_type=activation),
                    target_config=TargetConfig(), calibration=lambda: samples, calibration_ref="synthetic images")
    res = {}
    for p in (Precision.FP32, Precision.INT8):
        m = OnnxExporter().export(job, p, out / f"onnx-{p}")
        res[p.value] = {"path": out / f"onnx-{p}" / "model.onnx", "size": m.size_bytes, "recipe": m.recipe,
                        "built_for": m.built_for}
    return res


def latency(paths: dict[str, Path], runs: int) -> dict[str, list[float]]:
    import numpy as np
    import onnxruntime as ort

    from benchmarks.mobilenet import synthetic_images

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    sess = {k: ort.InferenceSession(str(p), opts, providers=["CPUExecutionProvider"]) for k, p in paths.items()}
    feed = {"image": synthetic_images(1, seed=7)[0]}
    for s in sess.values():
        for _ in range(5):
            s.run(None, feed)
    samples: dict[str, list[float]] = {k: [] for k in sess}
    for _ in range(runs):
        for k, s in sess.items():
            t = time.perf_counter_ns()
            s.run(None, feed)
            samples[k].append((time.perf_counter_ns() - t) / 1e6)
    assert all(np.isfinite(v).all() for v in samples.values())
    return samples


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=60)
    p.add_argument("--calibration-samples", type=int, default=32)
    p.add_argument("--activation-type", default="auto", help="auto|uint8|int8 (see docs/export.md)")
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="edgeship-onnx-int8-") as tmp:
        arts = export(Path(tmp), args.calibration_samples, args.activation_type)
        lat = latency({k: v["path"] for k, v in arts.items()}, args.runs)
    med = {k: statistics.median(v) for k, v in lat.items()}
    speedup = med["fp32"] / med["int8"]
    size_ratio = arts["int8"]["size"] / arts["fp32"]["size"]
    rec = arts["int8"]["recipe"]
    res = {"runs": args.runs, "median_ms": med, "speedup": round(speedup, 3), "size_bytes": {k: v["size"] for k, v in arts.items()},
           "size_ratio": round(size_ratio, 4), "activation_type": rec["activation_type"], "reason": (arts["int8"]["built_for"] or {}).get("why"),
           "int8_fidelity": rec["fidelity_check"], "goal_met": speedup >= 1.7 and size_ratio <= 0.27}
    print(f"MobileNetV2 224x224, onnxruntime 1 thread, {args.runs} interleaved runs each")
    print(f"  fp32: median {med['fp32']:.2f} ms  size {arts['fp32']['size'] / 1e6:.2f} MB")
    print(f"  int8: median {med['int8']:.2f} ms  size {arts['int8']['size'] / 1e6:.2f} MB  "
          f"(activations {rec['activation_type']}, weights {rec['weight_type']}, per_channel {rec['per_channel']})")
    print(f"  speedup {speedup:.2f}x (goal >= 1.7x)   size ratio {size_ratio:.3f}x (goal <= 0.27x)")
    print(f"  int8 fidelity vs torch: {rec['fidelity_check']}")
    if args.json:
        args.json.write_text(json.dumps(res, indent=2, default=str) + "\n")
    return 0 if res["goal_met"] else 1


if __name__ == "__main__":
    sys.exit(main())
