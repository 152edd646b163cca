"""The compression Pareto table: size, latency and accuracy of each recipe, per network.

Rows: FP32, INT8, 4-bit weights (int4-weight), pruned+INT8, pruned+distilled+INT8,
low-rank+INT8, each exported by edgeship's own pipeline (compress -> export -> eval ->
profile on the local CPU, single thread) to TFLite and ONNX.

- demo: the digits CNN; accuracy on the held-out test split (360 labelled images); prune and
  distill as in examples/compress.toml.
- mobilenet: the MobileNetV2 of benchmarks/mobilenet.py with random, BN-calibrated weights.
  No dataset: images are SYNTHETIC (benchmarks/mobilenet.py) and labels are the original
  model's own top-1, so "accuracy" is top-1 agreement with the original FP32 model, and
  distillation trains on synthetic images for a few steps. TFLite only (ONNX int8 of this net
  is benchmarks/onnx_int8.py's subject).

Latency is indicative (one short profile per artifact on a shared CPU), not a gate.

    .venv/bin/python benchmarks/compress_pareto.py [--nets demo,mobilenet] [--json out.json]
        [--workdir build/pareto --reuse]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import tomllib

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEMO_PRUNE = {"kind": "prune", "sparsity": 0.6}
DEMO_DISTILL = {"kind": "distill", "epochs": 60, "temperature": 4.0, "alpha": 0.7, "lr": 0.003, "patience": 12}
MN_PRUNE = {"kind": "prune", "sparsity": 0.5}
MN_DISTILL = {"kind": "distill", "epochs": 1, "max_steps": 24, "batch_size": 8, "lr": 0.001, "patience": 1}
LOW_RANK = {"kind": "low_rank", "energy": 0.9, "min_features": 8}


def variants(net: str) -> list[tuple[str, list[dict[str, Any]], str]]:
    prune, distill = (DEMO_PRUNE, DEMO_DISTILL) if net == "demo" else (MN_PRUNE, MN_DISTILL)
    return [
        ("FP32", [], "fp32"), ("INT8", [], "int8"), ("4-bit weights", [], "int4-weight"),
        ("pruned+INT8", [prune], "int8"), ("pruned+distilled+INT8", [prune, distill], "int8"),
        ("low-rank+INT8", [LOW_RANK], "int8"),
    ]


# -- MobileNetV2 on synthetic data ---------------------------------------------------------------
@lru_cache(maxsize=1)
def _mn_labelled() -> tuple[np.ndarray, np.ndarray]:
    import torch

    from benchmarks.mobilenet import build_mobilenet_v2, synthetic_images

    x = np.concatenate(synthetic_images(96, seed=7))
    with torch.no_grad():
        y = torch.cat([build_mobilenet_v2()(torch.from_numpy(x[i : i + 16])) for i in range(0, 96, 16)]).argmax(1)
    return x, y.numpy()


def mobilenet_train() -> Any:
    x, y = _mn_labelled()
    for i in range(0, 64, 8):
        yield {"image": x[i : i + 8], "label": y[i : i + 8]}


def mobilenet_eval() -> Any:
    x, y = _mn_labelled()
    for i in range(64, 96, 8):
        yield {"image": x[i : i + 8], "label": y[i : i + 8]}


def mobilenet_calibration() -> Any:
    from benchmarks.mobilenet import synthetic_images

    yield {"image": np.concatenate(synthetic_images(32, seed=0))}


def base_config(net: str) -> dict[str, Any]:
    if net == "demo":
        data = tomllib.loads((ROOT / "examples" / "compress.toml").read_text())
        data.pop("budgets", None)
        data.pop("build", None)
        data["targets"] = {"onnx": {"precisions": ["fp32", "int8", "int4-weight"]},
                           "tflite": {"precisions": ["fp32", "int8", "int4-weight"]}}
        return data
    return {
        "model": {"name": "mobilenet_v2", "factory": "benchmarks.mobilenet:build_mobilenet_v2", "outputs": ["logits"],
                  "inputs": [{"name": "image", "shape": [1, 3, 224, 224]}]},
        "data": {"calibration": "benchmarks.compress_pareto:mobilenet_calibration",
                 "evaluation": "benchmarks.compress_pareto:mobilenet_eval",
                 "train": "benchmarks.compress_pareto:mobilenet_train", "calibration_samples": 32},
        "targets": {"tflite": {"precisions": ["fp32", "int8", "int4-weight"]}},
    }


def _reusable(cfg: Any) -> dict[str, Any] | None:
    """The compressed manifest left by an earlier run of this script, if still valid."""
    from edgeship.compress.store import compressed_dir, read, recipe_digest
    from edgeship.errors import ArtifactError

    try:
        m, _ = read(compressed_dir(cfg))
    except ArtifactError:
        return None
    return m if m.get("recipe_digest") == recipe_digest(cfg) else None


def run_net(net: str, work: Path, say: Any, reuse: bool = False) -> list[dict[str, Any]]:
    from edgeship.artifact.selection import parse_precisions, parse_targets
    from edgeship.compress.stage import compress
    from edgeship.config import parse_config
    from edgeship.exporting.pipeline import export
    from edgeship.measure.evaluate import evaluate
    from edgeship.measure.profile import profile
    from edgeship.measure.stats import timing_summary

    rows: list[dict[str, Any]] = []
    groups: dict[str, list[tuple[str, str]]] = {}
    steps_of: dict[str, list[dict[str, Any]]] = {}
    for label, steps, precision in variants(net):
        key = "+".join(s["kind"] for s in steps) or "original"
        groups.setdefault(key, []).append((label, precision))
        steps_of[key] = steps
    for key, wanted in groups.items():
        data = base_config(net)
        data["compress"] = {"seed": 0, "steps": steps_of[key]}
        data["build_dir"] = str(work / net / key)
        data["profile"] = {"threads": 1, "warmup_runs": 3, "warmup_seconds": 0.1, "min_runs": 30,
                           "min_seconds": 0.3, "max_seconds": 5.0}
        cfg = parse_config(data, source=f"{net}/{key}", path=work / net / key / "edgeship.toml")
        compressed = None
        fresh = False
        if steps_of[key]:
            compressed = _reusable(cfg) if reuse else None
            if compressed is None:
                say(f"[{net}] compress {key} ...")
                compressed, fresh = compress(cfg, on_event=None), True
        precisions = parse_precisions(",".join(p for _, p in wanted))
        targets = parse_targets(",".join(cfg.targets.keys()))
        have = all((cfg.artifacts_dir / f"{t}-{p}" / "manifest.json").is_file() for t in targets for p in precisions)
        if fresh or not (reuse and have):
            say(f"[{net}] export {key}: {', '.join(p for _, p in wanted)} ...")
            export(cfg, targets, precisions)
        report = evaluate(cfg, targets, precisions)
        results = {r["artifact"]["name"]: r for r in profile(cfg, "local", targets, precisions)}
        for label, precision in wanted:
            for t in targets:
                name = f"{t}-{precision}"
                e = report["artifacts"][name]
                r = results.get(name)
                rows.append({
                    "net": net, "variant": label, "artifact": name, "size_bytes": e["size_bytes"],
                    "accuracy": e.get("accuracy"), "accuracy_drop_original": e.get("accuracy_drop_original"),
                    "p50_ms": timing_summary(r["timing"]).p50 if r and r.get("status") == "ok" else None,
                    "params": compressed["compressed"]["params"] if compressed else None,
                    "steps_note": "; ".join(compressed["notes"]) if compressed else "",
                })
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    from edgeship.ui.table import render

    out = []
    for net in dict.fromkeys(r["net"] for r in rows):
        sub = [r for r in rows if r["net"] == net]
        fp32 = {r["artifact"].split("-")[0]: r["size_bytes"] for r in sub if r["variant"] == "FP32"}
        body = []
        for r in sub:
            t = r["artifact"].split("-")[0]
            body.append([r["variant"], r["artifact"], f"{r['size_bytes'] / 1024:.1f}",
                         f"{fp32[t] / r['size_bytes']:.1f}x", "-" if r["p50_ms"] is None else f"{r['p50_ms']:.3f}",
                         "-" if r["accuracy"] is None else f"{100 * r['accuracy']:.2f}%",
                         "-" if r["accuracy_drop_original"] is None else f"{100 * r['accuracy_drop_original']:+.2f} pt",
                         r["steps_note"][:50]])
        out.append(f"{net}\n" + render(["variant", "artifact", "KiB", "smaller", "p50 ms", "accuracy", "drop", "note"], body))
    return "\n\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nets", default="demo,mobilenet")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--workdir", type=Path, help="keep the builds here (default: a temp dir)")
    ap.add_argument("--reuse", action="store_true", help="with --workdir: keep valid compressed models and artifacts")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = args.workdir or Path(tmp)
        rows: list[dict[str, Any]] = []
        for net in args.nets.split(","):
            rows += run_net(net, work, lambda m: print(m, file=sys.stderr, flush=True), args.reuse)
    print(table(rows))
    if args.json:
        import platform

        args.json.write_text(json.dumps({"schema": "edgeship.bench.compress_pareto/1", "machine": platform.machine(),
                                         "processor": platform.processor(), "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
