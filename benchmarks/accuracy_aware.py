"""Accuracy-aware INT8 on ONNX: what the fallback buys and what it costs.

For each case, the same model is exported to onnx-int8 twice on this host (its CPU class):
plain (``[quantization] accuracy_aware = false``) and accuracy-aware under a cosine budget
that plain INT8 misses. Reported: cosine (and accuracy drop where the data has labels)
before/after, layers kept in float of all quantized ones, the latency (ORT median, 1 thread,
alternating plain/aware sessions) and size of the result vs all-INT8, and the export time the
search adds (goal: aware export <= 3x the plain one on the demo).

Cases: ``outlier_mlp`` (tests/models.py, built to need it), ``depthwise_cnn`` (MobileNetV2-style
tiny net) and the demo ``digits_cnn``, the last two under a budget just above what plain INT8
reaches here (the budget is printed).

    .venv/bin/python benchmarks/accuracy_aware.py [--out FILE] [--case NAME ...]
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

# min cosine per case: outlier_mlp's is the test budget; the others sit just above plain INT8 here
CASES = {"outlier_mlp": 0.999, "depthwise_cnn": 0.99999, "digits_cnn": 0.9999}


def _config(tmp: Path, case: str, aware: bool, min_cosine: float) -> Any:
    from tests.conftest import make_config, tiny_config

    q = {"accuracy_aware": aware, "min_cosine": min_cosine}
    targets = {"onnx": {"precisions": ["int8"]}}
    if case == "digits_cnn":
        return make_config(tmp, quantization=q, targets=targets, budgets=[])
    return tiny_config(tmp, case, quantization=q, targets=targets, budgets=[])


def _latency_ms(plain: Path, aware: Path, feed: dict[str, Any], rounds: int = 3) -> tuple[float, float]:
    import statistics

    from edgeship.exporters._onnx_recipes import _median_ms, _session

    a, b = [], []
    sp, sa = _session(plain), _session(aware)
    for _ in range(rounds):     # alternate so drift on a shared machine hits both alike
        a.append(_median_ms(sp, feed))
        b.append(_median_ms(sa, feed))
    return statistics.median(a), statistics.median(b)


def run_case(case: str, min_cosine: float) -> dict[str, Any]:
    from edgeship.accuracy.search import _Validator
    from edgeship.errors import AccuracyFallbackFailed
    from edgeship.exporters.onnx import _FP32_CACHE
    from edgeship.exporting.pipeline import build_job, export
    from edgeship.types import Precision, Target

    tmp = Path(tempfile.mkdtemp(prefix=f"edgeship-aa-{case}-"))
    out: dict[str, Any] = {"case": case, "budget": {"min_cosine": min_cosine}}
    plain_cfg = _config(tmp / "plain", case, False, min_cosine)
    _FP32_CACHE.clear()    # both timed exports start cold: torch.onnx.export included
    t0 = time.perf_counter()
    (plain,) = export(plain_cfg, (Target.ONNX,), (Precision.INT8,))
    out["plain_export_s"] = round(time.perf_counter() - t0, 2)
    job = build_job(plain_cfg, Target.ONNX)
    val = _Validator(plain_cfg, job)
    plain_dir = plain_cfg.artifacts_dir / "onnx-int8"
    out["before"] = val.score(plain_dir, plain)
    aware_cfg = _config(tmp / "aware", case, True, min_cosine)
    events: list[str] = []
    _FP32_CACHE.clear()
    t0 = time.perf_counter()
    try:
        (aware,) = export(aware_cfg, (Target.ONNX,), (Precision.INT8,), on_event=events.append)
    except AccuracyFallbackFailed as exc:
        out.update(aware_export_s=round(time.perf_counter() - t0, 2), status="failed", error=str(exc),
                   table=[e for e in events if not e.startswith("export")])
        return out
    out["aware_export_s"] = round(time.perf_counter() - t0, 2)
    out["search_factor"] = round(out["aware_export_s"] / out["plain_export_s"], 2)
    rec = aware.recipe.get("accuracy_aware") or {}
    if rec.get("seconds"):   # the same run's own build time: aware = build + search
        out["search_factor_same_run"] = round(out["aware_export_s"] / (out["aware_export_s"] - rec["seconds"]), 2)
    out.update(status=rec.get("status"), quantized_layers=rec.get("quantized_layers"),
               reverted=[(r["layer"], r.get("module")) for r in rec.get("reverted", [])],
               after=rec.get("final"), search_s=rec.get("seconds"),
               summary=next((e.strip() for e in events if "kept in float" in e), None))
    aware_dir = aware_cfg.artifacts_dir / "onnx-int8"
    ms_plain, ms_aware = _latency_ms(plain_dir / "model.onnx", aware_dir / "model.onnx", dict(job.example_inputs))
    out.update(latency_ms_all_int8=round(ms_plain, 4), latency_ms_aware=round(ms_aware, 4),
               latency_cost=round(ms_aware / ms_plain, 3), size_kib_all_int8=round(plain.size_bytes / 1024, 1),
               size_kib_aware=round(aware.size_bytes / 1024, 1))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "build" / "bench" / "accuracy_aware.json")
    ap.add_argument("--case", action="append", choices=sorted(CASES))
    args = ap.parse_args()
    from edgeship.runtimes.cpuinfo import cpu_features

    cpu = cpu_features()
    # one untimed export first: torch.onnx / onnxruntime import and first-call costs are not the search's
    from edgeship.exporting.pipeline import export
    from edgeship.types import Precision, Target

    export(_config(Path(tempfile.mkdtemp(prefix="edgeship-aa-warm-")), "outlier_mlp", False, 0.0),
           (Target.ONNX,), (Precision.INT8,))
    results = [run_case(c, CASES[c]) for c in (args.case or list(CASES))]
    doc = {"schema": "edgeship.bench.accuracy_aware/1", "cpu": cpu, "platform": platform.platform(),
           "cores": os.cpu_count(), "results": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    print(f"CPU class {cpu['cpu_class']} ({', '.join(cpu['features'])}), {os.cpu_count()} cores")
    print("| case | budget | before | after | float layers | latency vs all-INT8 | size KiB | export s plain / aware (x) | status |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        b = r["before"]
        if r.get("status") == "failed":
            print(f"| {r['case']} | cos >= {r['budget']['min_cosine']} | {b['cosine_mean']:.5f} | not met (exit 1) | - | - | - "
                  f"| {r['plain_export_s']} / {r['aware_export_s']} | failed: exit 1 |")
            continue
        a = r["after"] or b
        n = len(r["reverted"])
        print(f"| {r['case']} | cos >= {r['budget']['min_cosine']} | {b['cosine_mean']:.5f} | {a['cosine_mean']:.5f} "
              f"| {n} of {r['quantized_layers'] or '-'} | {r['latency_ms_all_int8']:.4f} -> {r['latency_ms_aware']:.4f} ms "
              f"({r['latency_cost']:.2f}x) | {r['size_kib_all_int8']} -> {r['size_kib_aware']} "
              f"| {r['plain_export_s']} / {r['aware_export_s']} ({r['search_factor']}x; "
              f"{r.get('search_factor_same_run') or '-'}x same run) | {r['status']} |")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
