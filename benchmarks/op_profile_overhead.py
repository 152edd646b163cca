"""Op-profiling overhead: ``profile --ops`` runs vs plain latency rounds, per backend.

A MobileNet-style net (tests/models.py ``DepthwiseCNN`` at 3x224x224) exported to ONNX and
TFLite, FP32 and INT8. Per artifact, R interleaved pairs of fresh runner processes on the
local device: a plain latency round (what ``profile`` measures) and an op-profiling run
(``runner --op-profile``, what ``profile --ops`` measures). Reported per artifact: the plain
median, the profiled runs' median (overhead = their ratio - 1), the sum of the per-op
medians and its share of the plain median (the ``profile --ops`` 15% check). A runtime
without per-op times (LiteRT's Python interpreter) says so instead of a number.

    nice .venv/bin/python benchmarks/op_profile_overhead.py [--rounds 3] [--runs 200] [--threads 1]
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))   # tests.models:DepthwiseCNN
os.environ.setdefault("EDGESHIP_CACHE_DIR", str(ROOT / "build" / "cache"))


def _config(tmp: Path, threads: int, runs: int) -> Any:
    import tomllib

    from edgeship.config import parse_config

    base = tomllib.loads((ROOT / "edgeship.toml").read_text())
    data = dict(base, build_dir=str(tmp / "build"), budgets=[])
    data["model"] = {"name": "mobilenet_like", "factory": "tests.models:DepthwiseCNN", "outputs": ["logits"],
                     "inputs": [{"name": "image", "shape": [1, 3, 224, 224], "dtype": "float32"}]}
    # random images as calibration data (a directory of .npz): the timing does not depend on them
    data["data"] = {"calibration": str(tmp / "calibration"), "calibration_samples": 16}
    data["targets"] = {"onnx": {"precisions": ["fp32", "int8"]}, "tflite": {"precisions": ["fp32", "int8"]}}
    data["profile"] = {"threads": threads, "min_runs": runs, "min_seconds": 0.0, "warmup_runs": 10,
                       "warmup_seconds": 0.5, "max_seconds": 60.0, "timeout_s": 600.0, "rounds": 1}
    return parse_config(data, source=str(tmp / "edgeship.toml"), path=tmp / "edgeship.toml")


def measure(cfg: Any, rounds: int, runs: int, threads: int) -> list[dict[str, Any]]:
    from edgeship.artifact.selection import find_artifacts
    from edgeship.devices.local import LocalDevice
    from edgeship.measure.inputs import profiling_inputs
    from edgeship.measure.op_profile import op_profile_artifact
    from edgeship.measure.profile import profile_artifact
    from edgeship.measure.stats import timing_summary

    inputs = profiling_inputs(cfg)
    out = []
    with LocalDevice() as dev:
        for ref in find_artifacts(cfg):
            plain, profiled, sums, reason = [], [], [], None
            for _ in range(rounds):      # interleaved: a slow spell of the machine hits both sides
                r = profile_artifact(cfg, dev, ref, runs, 0.0, inputs, threads)
                plain.append(timing_summary(r["timing"]).p50)
                o = op_profile_artifact(cfg, dev, ref, inputs, runs, threads)
                if o["status"] != "ok":
                    reason = o["skip_reason"]
                    continue
                profiled.append(o["profiled_run"]["p50_ms"])
                sums.append(o["total"]["p50_ms"])
            p = statistics.median(plain)
            row: dict[str, Any] = {"artifact": ref.name, "plain_p50_ms": p, "rounds": rounds, "runs": runs}
            if reason:
                row["op_profile"] = reason
            else:
                q, s = statistics.median(profiled), statistics.median(sums)
                row.update(profiled_p50_ms=q, overhead=q / p - 1, ops_sum_p50_ms=s, ops_sum_share=s / p)
            out.append(row)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--runs", type=int, default=200)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--export-only", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.export_only:
        import numpy as np

        from edgeship.exporting.pipeline import export

        (args.export_only / "calibration").mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(0)
        for i in range(16):
            np.savez(args.export_only / "calibration" / f"{i:02d}.npz",
                     image=rng.random((1, 3, 224, 224), dtype=np.float32))
        export(_config(args.export_only, args.threads, args.runs))
        return 0
    with tempfile.TemporaryDirectory(prefix="op-overhead-") as tmp:
        # export in a child: torch (and its threads) must not live in the measuring process
        done = subprocess.run([sys.executable, __file__, "--export-only", tmp], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            print(done.stderr[-3000:], file=sys.stderr)
            return 1
        from edgeship.runtimes.runner import cpu_model

        rows = measure(_config(Path(tmp), args.threads, args.runs), args.rounds, args.runs, args.threads)
    print(json.dumps({"cpu": cpu_model(), "threads": args.threads, "results": rows}, indent=2))
    for r in rows:
        if "overhead" in r:
            print(f"{r['artifact']:<12} plain {r['plain_p50_ms']:.3f} ms  profiled {r['profiled_p50_ms']:.3f} ms "
                  f"({r['overhead']:+.1%})  ops sum {r['ops_sum_p50_ms']:.3f} ms = {r['ops_sum_share']:.0%} of plain",
                  file=sys.stderr)
        else:
            print(f"{r['artifact']:<12} plain {r['plain_p50_ms']:.3f} ms  op profile: {r['op_profile']}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
