"""Accuracy-aware INT8: what the search buys and what it costs, per model and target.

For each case the model is exported to INT8 twice on this host (its CPU class): plain (the
exporter alone, the export bound deferred so a broken build is still measured) and through the
pipeline under a cosine budget plain INT8 misses (the staged search, edgeship/accuracy/search.py).
Reported: plain vs shipped cosine (mean and min; accuracy drop where the data has labels), the
layers kept float (and with 16-bit activations) of all quantized ones, the latency (1 thread,
alternating plain/shipped) and size of the shipped build vs plain INT8, and the search's own
seconds vs the plain export's (goal: <= 3x).

Cases: ``outlier_mlp`` (mildly off), ``outlier_mlp12`` and ``tiny_vit`` (plain INT8 below the
export bound: refused before issue 26), ``bert6`` (a 6-layer BERT-style encoder, ONNX static
INT8), ``depthwise_cnn`` and the demo ``digits_cnn`` under a budget just above plain INT8 here.

    nice .venv/bin/python benchmarks/accuracy_aware.py [--out FILE] [--case NAME ...]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("EDGESHIP_CACHE_DIR", str(ROOT / "build" / "cache"))   # the demo's trained weights

# (model, target) -> min cosine: outlier_mlp's is its test budget; cnn ones sit just above plain INT8 here
CASES = {("outlier_mlp", "onnx"): 0.999, ("outlier_mlp12", "onnx"): 0.99, ("outlier_mlp12", "tflite"): 0.99,
         ("tiny_vit", "onnx"): 0.99, ("tiny_vit", "tflite"): 0.99, ("bert6", "onnx"): 0.99,
         ("depthwise_cnn", "onnx"): 0.99999, ("digits_cnn", "onnx"): 0.9999}


def _config(tmp: Path, case: str, target: str, min_cosine: float | None) -> Any:
    from tests.conftest import make_config, tiny_config

    budgets = [] if min_cosine is None else [{"device": "*", "target": "*", "precision": "int8", "min_cosine": min_cosine}]
    targets = {target: {"precisions": ["int8"]}}
    if case == "digits_cnn":
        return make_config(tmp, targets=targets, budgets=budgets)
    return tiny_config(tmp, case, targets=targets, budgets=budgets)


def _latency_ms(plain: Any, shipped: Any, feed: dict[str, Any], rounds: int = 3) -> tuple[float, float]:
    """Median latency (ms, 1 thread) of two artifacts, alternating so drift hits both alike."""
    import statistics

    from edgeship.runtimes.base import get_runtime

    def load(ref: tuple[Path, Any]) -> tuple[Any, Any]:
        d, m = ref
        rt = get_runtime(m.runtime)(str(d / m.model_file), m.to_dict(), 1)
        rt.load()
        return rt, rt.prepare(feed)

    def median(rt: Any, prepared: Any) -> float:
        for _ in range(5):
            rt.invoke(prepared)
        times = []
        end = time.perf_counter() + 0.5
        while len(times) < 20 or time.perf_counter() < end:
            t0 = time.perf_counter_ns()
            rt.invoke(prepared)
            times.append((time.perf_counter_ns() - t0) / 1e6)
        return statistics.median(times)

    a, b = [], []
    pa, pb = load(plain), load(shipped)
    for _ in range(rounds):
        a.append(median(*pa))
        b.append(median(*pb))
    return statistics.median(a), statistics.median(b)


def run_case(case: str, target: str, min_cosine: float) -> dict[str, Any]:
    import dataclasses

    from edgeship.accuracy.search import _Validator
    from edgeship.exporters.base import get_exporter
    from edgeship.exporters.onnx import _FP32_CACHE
    from edgeship.exporting.cpuclass import host_target
    from edgeship.exporting.failures import ExportIncomplete
    from edgeship.exporting.pipeline import build_job, export
    from edgeship.types import Precision, Target

    tmp = Path(tempfile.mkdtemp(prefix=f"edgeship-aa-{case}-{target}-"))
    out: dict[str, Any] = {"case": case, "target": target, "budget": {"min_cosine": min_cosine}}
    plain_cfg = _config(tmp / "plain", case, target, None)
    job = dataclasses.replace(build_job(plain_cfg, Target(target)), cpu_target=host_target(), defer_bound=True)
    plain_dir = plain_cfg.artifacts_dir / f"{target}-int8"
    _FP32_CACHE.clear()    # both timed exports start cold: torch.onnx.export included
    t0 = time.perf_counter()
    plain = get_exporter(target).export(job, Precision.INT8, plain_dir)
    out["plain_export_s"] = round(time.perf_counter() - t0, 2)
    val = _Validator(plain_cfg, job)
    out["before"] = val.score(plain_dir, plain)
    aware_cfg = _config(tmp / "aware", case, target, min_cosine)
    events: list[str] = []
    _FP32_CACHE.clear()
    t0 = time.perf_counter()
    try:
        (aware,) = export(aware_cfg, (Target(target),), (Precision.INT8,), on_event=events.append)
    except ExportIncomplete as exc:
        out.update(aware_export_s=round(time.perf_counter() - t0, 2), status="failed (exit 1)",
                   error=exc.failures[0].reason, table=[e for e in events if not e.startswith("export")])
        return out
    out["aware_export_s"] = round(time.perf_counter() - t0, 2)
    rec = aware.recipe.get("accuracy_aware") or {}
    out.update(status=rec.get("status"), quantized_layers=rec.get("quantized_layers"),
               kept_float=list(aware.recipe.get("kept_float") or []),
               int16=list((aware.recipe.get("int16_activations") or {}).get("layers", [])),
               reverted_modules=[r.get("module") for r in rec.get("reverted", [])],
               after=rec.get("final"), search_s=rec.get("seconds"), plain_export_s_same_run=rec.get("plain_export_seconds"),
               candidates=[{k: c.get(k) for k in ("name", "cosine_mean", "size_bytes", "median_ms", "met")}
                           for c in rec.get("candidates", [])], winner=rec.get("winner"))
    if rec.get("seconds") and rec.get("plain_export_seconds"):
        out["search_vs_plain_export"] = round(rec["seconds"] / rec["plain_export_seconds"], 2)
    aware_dir = aware_cfg.artifacts_dir / f"{target}-int8"
    ms_plain, ms_aware = _latency_ms((plain_dir, plain), (aware_dir, aware), dict(job.example_inputs))
    out.update(latency_ms_plain=round(ms_plain, 4), latency_ms_shipped=round(ms_aware, 4),
               latency_cost=round(ms_aware / ms_plain, 3), size_kib_plain=round(plain.size_bytes / 1024, 1),
               size_kib_shipped=round(aware.size_bytes / 1024, 1))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "build" / "bench" / "accuracy_aware.json")
    ap.add_argument("--case", action="append", choices=sorted({c for c, _ in CASES}))
    args = ap.parse_args()
    from edgeship.runtimes.cpuinfo import cpu_features

    cpu = cpu_features()
    # one untimed export first: torch.onnx / onnxruntime import and first-call costs are not the search's
    from edgeship.exporting.pipeline import export
    from edgeship.types import Precision, Target

    export(_config(Path(tempfile.mkdtemp(prefix="edgeship-aa-warm-")), "outlier_mlp", "onnx", None),
           (Target.ONNX,), (Precision.INT8,))
    results = [run_case(c, t, cos) for (c, t), cos in CASES.items() if not args.case or c in args.case]
    doc = {"schema": "edgeship.bench.accuracy_aware/2", "cpu": cpu, "platform": platform.platform(),
           "cores": os.cpu_count(), "results": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    print(f"CPU class {cpu['cpu_class']} ({', '.join(cpu['features'])}), {os.cpu_count()} cores")
    print("| case | budget | plain cos mean/min | shipped cos mean/min | off INT8 | latency plain -> shipped "
          "| size KiB | search s / plain export s (x) | status |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        b = r["before"]
        head = (f"| {r['case']} {r['target']} | cos >= {r['budget']['min_cosine']} "
                f"| {b['cosine_mean']:.4f} / {b['cosine_min']:.4f} ")
        if r.get("status", "").startswith("failed"):
            print(head + f"| not met | - | - | - | {r['aware_export_s']} s export | {r['status']} |")
            continue
        a = r["after"] or b
        off = ", ".join(r["reverted_modules"] or r["kept_float"]) or "-"
        if r["int16"]:
            off += f" (16-bit: {', '.join(r['int16'])})"
        factor = r.get("search_vs_plain_export")
        print(head + f"| {a['cosine_mean']:.4f} / {a['cosine_min']:.4f} | {off} of {r['quantized_layers'] or '-'} "
              f"| {r['latency_ms_plain']:.4f} -> {r['latency_ms_shipped']:.4f} ms ({r['latency_cost']:.2f}x) "
              f"| {r['size_kib_plain']} -> {r['size_kib_shipped']} "
              f"| {r['search_s'] or 0} / {r['plain_export_s_same_run'] or '-'} ({factor or '-'}x) | {r['status']} |")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
