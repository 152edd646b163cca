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

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def own_mobilenet_v2(classes: int = 1000) -> Any:
    """MobileNetV2 (Sandler et al. 2018), width 1.0: inverted residuals, linear bottlenecks."""
    import torch
    from torch import nn

    def cbr(cin: int, cout: int, k: int, s: int, groups: int = 1, act: bool = True) -> list[nn.Module]:
        layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, s, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
        return layers + [nn.ReLU6()] if act else layers

    class Block(nn.Module):
        def __init__(self, cin: int, cout: int, s: int, t: int) -> None:
            super().__init__()
            hid = cin * t
            layers = (cbr(cin, hid, 1, 1) if t != 1 else []) + cbr(hid, hid, 3, s, groups=hid) + cbr(hid, cout, 1, 1, act=False)
            self.body, self.res = nn.Sequential(*layers), s == 1 and cin == cout

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + self.body(x) if self.res else self.body(x)

    torch.manual_seed(0)
    layers: list[nn.Module] = cbr(3, 32, 3, 2)
    cin = 32
    for t, c, n, s in [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]:
        for i in range(n):
            layers.append(Block(cin, c, s if i == 0 else 1, t))
            cin = c
    layers += cbr(cin, 1280, 1, 1) + [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(1280, classes)]
    return nn.Sequential(*layers).eval()


def build() -> tuple[Any, str]:
    try:
        from benchmarks.mobilenet import build_mobilenet_v2  # the shared builder, once it exists
    except ModuleNotFoundError as exc:
        if exc.name not in ("benchmarks.mobilenet", "benchmarks"):
            raise
        return own_mobilenet_v2(), "benchmarks/coreml_size.py:own_mobilenet_v2"
    return build_mobilenet_v2().eval(), "benchmarks/mobilenet.py:build_mobilenet_v2"


def measure(n_calib: int, out: Path) -> dict[str, Any]:
    from edgeship.calibration import Sample
    from edgeship.exporters.base import ExportJob
    from edgeship.exporters.coreml import CoreMLExporter

    from edgeship.config import InputSpec, QuantizationConfig, TargetConfig
    from edgeship.types import Precision

    model, source = build()
    rng = np.random.default_rng(0)
    shape = (1, 3, 224, 224)
    samples = [Sample({"image": rng.standard_normal(shape).astype(np.float32)}) for _ in range(n_calib)]
    job = ExportJob(model=model, model_name="mobilenet_v2", inputs=(InputSpec(name="image", shape=shape),),
                    outputs=("logits",), example_inputs=samples[0].inputs, quantization=QuantizationConfig(),
                    target_config=TargetConfig(), calibration=lambda: samples, calibration_ref="random normal")
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
