"""A MobileNetV2 (width 1.0, 224x224, 3.5 M parameters) with random but BN-calibrated weights.

Random weights give activations that blow up or vanish layer by layer; re-estimating every
BatchNorm's running statistics on synthetic images (train-mode forward passes, no gradient)
keeps each layer's output near unit scale, so quantization sees realistic ranges.
Shared by the benchmarks (onnx_int8.py, coreml_size.py, ...).
"""

from __future__ import annotations

from typing import Any

import numpy as np

SHAPE = (1, 3, 224, 224)


def synthetic_images(n: int, seed: int = 0) -> list[np.ndarray]:
    """Smooth random images (low-frequency noise, normalized like ImageNet inputs)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        coarse = rng.standard_normal((1, 3, 14, 14)).astype(np.float32)
        img = np.kron(coarse, np.ones((1, 1, 16, 16), dtype=np.float32))
        out.append((img + 0.3 * rng.standard_normal(SHAPE).astype(np.float32)).astype(np.float32))
    return out


def build_mobilenet_v2(classes: int = 1000, calibrate_bn: bool = True) -> Any:
    """MobileNetV2 (Sandler et al. 2018): inverted residuals, linear bottlenecks, ReLU6; eval mode."""
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

    with torch.random.fork_rng():
        torch.manual_seed(0)
        layers: list[nn.Module] = cbr(3, 32, 3, 2)
        cin = 32
        for t, c, n, s in [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]:
            for i in range(n):
                layers.append(Block(cin, c, s if i == 0 else 1, t))
                cin = c
        layers += cbr(cin, 1280, 1, 1) + [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(1280, classes)]
        model = nn.Sequential(*layers)
    if calibrate_bn:
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.reset_running_stats()
                m.momentum = None        # cumulative average over the calibration batches
        model.train()
        with torch.no_grad():
            batch = torch.from_numpy(np.concatenate(synthetic_images(16, seed=123)))
            for chunk in batch.split(8):
                model(chunk)
    return model.eval()


def mobilenet_job(n_calib: int) -> tuple[Any, str]:
    """An ExportJob for the MobileNetV2-style network calibrated on ``n_calib`` synthetic
    images, for benchmarks that call one exporter directly; returns (job, network name)."""
    from edgeship.calibration import Sample
    from edgeship.config import InputSpec, QuantizationConfig, TargetConfig
    from edgeship.exporters.base import ExportJob

    shape = (1, 3, 224, 224)
    samples = [Sample({"image": img.reshape(shape)}) for img in synthetic_images(n_calib)]
    job = ExportJob(model=build_mobilenet_v2().eval(), model_name="mobilenet_v2",
                    inputs=(InputSpec(name="image", shape=shape),), outputs=("logits",),
                    example_inputs=samples[0].inputs, quantization=QuantizationConfig(), target_config=TargetConfig(),
                    calibration=lambda: samples, calibration_ref="benchmarks/mobilenet.py:synthetic_images")
    return job, "benchmarks/mobilenet.py:build_mobilenet_v2"
