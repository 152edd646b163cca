"""CoreML package size: fp32 vs fp16 vs int8 (W8A8) vs int8-weight on a MobileNetV2-style net.

Acceptance (issue 5): the int8 package is <= 0.3x the fp32 package. Sizes are the sum of
every file inside the .mlpackage directory (what the manifest's file table checksums).

    .venv/bin/python benchmarks/coreml_size.py [--calibration-samples 8] [--json out.json]

The network is ``benchmarks/mobilenet.py:build_mobilenet_v2()`` when that module exists, else
the MobileNetV2 (width 1.0, 3.5 M parameters) built below; the JSON says which was used.
Calibration uses random normal images: this measures size, not accuracy.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def measure(n_calib: int, out: Path) -> dict[str, Any]:
    from benchmarks.mobilenet import mobilenet_job
    from edgeship.exporters.coreml import CoreMLExporter
    from edgeship.types import Precision

    job, source = mobilenet_job(n_calib)
    model = job.model
    params = sum(p.numel() for p in model.parameters())
    sizes: dict[str, int] = {}
    weights: dict[str, Any] = {}
    for p in (Precision.FP32, Precision.FP16, Precision.INT8, Precision.INT8_WEIGHT):
        m = CoreMLExporter().export(job, p, out / f"coreml-{p}")
        sizes[p.value] = sum(f["size"] for f in m.files.values())
        v = m.recipe["validation"]
        weights[p.value] = {"weight_dtypes": v["weight_dtypes"], "int8_weight_tensors": v["int8_weight_tensors"]}
    ratios = {k: round(v / sizes["fp32"], 4) for k, v in sizes.items()}
    return {"network": source, "parameters": params, "sizes_bytes": sizes, "ratio_to_fp32": ratios,
            "weights": weights, "int8_le_0.3x_fp32": ratios["int8"] <= 0.3}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--calibration-samples", type=int, default=8)
    p.add_argument("--json", type=Path, help="also write the results here")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="edgeship-coreml-size-") as tmp:
        res = measure(args.calibration_samples, Path(tmp))
    print(f"{res['network']}: {res['parameters'] / 1e6:.2f} M parameters")
    for k, v in res["sizes_bytes"].items():
        print(f"  coreml-{k:<12} {v / 1e6:8.2f} MB  {res['ratio_to_fp32'][k]:.3f}x fp32")
    print(f"  int8 <= 0.3x fp32: {res['int8_le_0.3x_fp32']}")
    if args.json:
        args.json.write_text(json.dumps(res, indent=2) + "\n")
    return 0 if res["int8_le_0.3x_fp32"] else 1


if __name__ == "__main__":
    sys.exit(main())
