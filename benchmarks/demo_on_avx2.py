"""The demo's onnx-int8 built for an x86-avx2 device, judged on AVX2 kernels (qemu -cpu Haswell).

    .venv/bin/python benchmarks/demo_on_avx2.py [--json out.json]

Exports the demo with ``--for`` a device declared ``cpu_class = "x86-avx2"`` (the real
pipeline: candidates measured under qemu, the winner kept), and for contrast the recipe this
host would pick for itself, then runs both on the WHOLE evaluation set with onnxruntime under
``qemu-x86_64-static -cpu Haswell`` (AVX2, no VNNI: what an AVX2-only EPYC or laptop runs) and
reports cosine vs the PyTorch FP32 reference, accuracy and its drop. Issue 12's bar: cosine
>= 0.999 and accuracy drop <= 0.5 point. Needs qemu-user-static.
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


def main() -> int:
    from edgeship.artifact.manifest import read_manifest
    from edgeship.artifact.selection import find_artifacts
    from edgeship.demo import evaluation_data
    from edgeship.exporters._onnx_recipes import emulator, run_emulated
    from edgeship.exporting.pipeline import export
    from edgeship.metrics import fidelity
    from edgeship.model.reference import load_reference, run_reference
    from edgeship.types import Precision, Target
    from tests.conftest import make_config

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    if emulator() is None:
        print("needs qemu-x86_64-static on an x86-64 Linux host: apt-get install qemu-user-static")
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="edgeship-demo-avx2-"))
    cfg = make_config(tmp, devices={"avx2box": {"kind": "ssh", "host": "avx2.invalid", "cpu_class": "x86-avx2"}})
    export(cfg, (Target.ONNX,), (Precision.INT8,), for_devices=("avx2box", "local"))
    arts = {r.name: r for r in find_artifacts(cfg)}
    feeds, labels = [], []
    for batch in evaluation_data():
        for i in range(len(batch["image"])):
            feeds.append({"image": batch["image"][i:i + 1]})
            labels.append(int(batch["label"][i]))
    model = load_reference(cfg)
    ref = [run_reference(model, f, cfg.model.inputs) for f in feeds]
    y = np.array(labels)
    ref_acc = float((np.array([r[0].argmax() for r in ref]) == y).mean())
    runs = run_emulated({name: a.model_path for name, a in arts.items()}, feeds)
    out: dict[str, Any] = {"samples": len(feeds), "fp32_reference_accuracy": ref_acc, "artifacts": {}}
    print(f"demo evaluation set: {len(feeds)} samples, FP32 reference accuracy {ref_acc:.4f}")
    for name, a in arts.items():
        m = read_manifest(a.path)
        got = runs[name]["outputs"]
        fid = fidelity(ref, got)
        acc = float((np.array([g[0].argmax() for g in got]) == y).mean())
        row = {"built_for": m.built_for["cpu_class"], "recipe": m.built_for["recipe"], **fid,
               "accuracy": acc, "accuracy_drop_points": 100 * (ref_acc - acc),
               "candidates": m.built_for["candidates"]}
        out["artifacts"][name] = row
        print(f"  {name:<22} built for {row['built_for']:<9} {row['recipe']:<18} under Haswell: cosine mean "
              f"{fid['cosine_mean']:.5f} min {fid['cosine_min']:.5f}  accuracy {acc:.4f} "
              f"(drop {row['accuracy_drop_points']:+.2f} points)")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2, default=str) + "\n")
    avx2 = next(r for r in out["artifacts"].values() if r["built_for"] == "x86-avx2")
    return 0 if avx2["cosine_mean"] >= 0.999 and avx2["accuracy_drop_points"] <= 0.5 else 1


if __name__ == "__main__":
    sys.exit(main())
