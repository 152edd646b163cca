"""Runner overhead: our runner's median latency vs a bare in-process InferenceSession.run loop.

Same ONNX artifact, same inputs, same thread count, in one run. Rounds are interleaved
(runner, bare, runner, bare, ...) so drift of the machine (thermal, other load) hits both
sides alike. The runner runs as profile runs it: a bundle in a temp dir, a fresh interpreter
via the local device; the bare loop is the simplest code a user would write to time ORT.
Goal: the ratio of medians within 5% (|ratio - 1| <= 0.05).

    .venv/bin/python benchmarks/runner_overhead.py [--artifact DIR] [--threads 1] [--rounds 5]

Without ``--artifact`` the demo's onnx-fp32 is exported into a temp build dir first, plus a
larger MobileNet-style network (tests/models.py ``DepthwiseCNN`` at 3x224x224) so the overhead
is also seen where one inference takes milliseconds rather than microseconds.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))   # tests.models:DepthwiseCNN
os.environ.setdefault("EDGESHIP_CACHE_DIR", str(ROOT / "build" / "cache"))   # the demo's trained weights


def bare_loop(model: Path, feeds: dict[str, np.ndarray], threads: int, warmup_s: float, runs: int) -> list[int]:
    """The plain ORT timing loop a user would write: one session, perf_counter_ns around run()."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    sess = ort.InferenceSession(str(model), so, providers=["CPUExecutionProvider"])
    t_end = time.perf_counter() + warmup_s
    while time.perf_counter() < t_end:
        sess.run(None, feeds)
    out = []
    for _ in range(runs):
        t0 = time.perf_counter_ns()
        sess.run(None, feeds)
        out.append(time.perf_counter_ns() - t0)
    return out


def runner_samples(artifact: Path, feeds: dict[str, np.ndarray], threads: int, warmup_s: float, runs: int) -> list[int]:
    from edgeship.artifact.runner_files import RUNNER_PACKAGE, write_runner_package
    from edgeship.devices.local import LocalDevice

    with tempfile.TemporaryDirectory() as tmp:
        b = Path(tmp)
        write_runner_package(b, "onnxruntime")
        np.savez(b / "inputs.npz", **feeds)
        argv = [sys.executable, "-m", f"{RUNNER_PACKAGE}.runner", "--artifact", str(artifact),
                "--inputs", "inputs.npz", "--out", "result.json", "--threads", str(threads),
                "--warmup-runs", "10", "--warmup-seconds", str(warmup_s), "--min-runs", str(runs),
                "--min-seconds", "0", "--max-runs", str(runs), "--max-seconds", "120"]
        with LocalDevice() as dev:
            run = dev.run(argv, timeout=300, cwd=tmp)
        if run.returncode != 0:
            raise SystemExit(f"runner failed: {run.stderr.strip()}")
        return json.loads((b / "result.json").read_text())["timing"]["samples_ns"]


def compare(artifact: Path, threads: int, rounds: int, runs: int, warmup_s: float) -> dict[str, Any]:
    manifest = json.loads((artifact / "manifest.json").read_text())
    rng = np.random.default_rng(0)
    feeds = {t["name"]: rng.standard_normal(t["shape"]).astype(t["dtype"]) for t in manifest["inputs"]}
    model = artifact / manifest["model_file"]
    ours, bare = [], []
    for _ in range(rounds):
        ours.append(statistics.median(runner_samples(artifact, feeds, threads, warmup_s, runs)) / 1e3)
        bare.append(statistics.median(bare_loop(model, feeds, threads, warmup_s, runs)) / 1e3)
    mo, mb = statistics.median(ours), statistics.median(bare)
    return {"artifact": str(artifact), "threads": threads, "rounds": rounds, "runs_per_round": runs,
            "runner_median_us": round(mo, 2), "bare_median_us": round(mb, 2), "ratio": round(mo / mb, 4),
            "runner_rounds_us": [round(x, 2) for x in ours], "bare_rounds_us": [round(x, 2) for x in bare],
            "within_5pct": abs(mo / mb - 1) <= 0.05}


def default_artifacts(tmp: Path) -> list[Path]:
    """Export the demo's onnx-fp32 and a MobileNet-style net into ``tmp`` (needs torch)."""
    import tomllib

    from edgeship.config import parse_config
    from edgeship.exporting.pipeline import export
    from edgeship.types import Precision, Target

    out = []
    base = tomllib.loads((ROOT / "edgeship.toml").read_text())
    mobilenet = {"name": "mobilenet_like", "factory": "tests.models:DepthwiseCNN", "outputs": ["logits"],
                 "inputs": [{"name": "image", "shape": [1, 3, 224, 224], "dtype": "float32"}]}
    for name, model in (("demo", None), ("mobilenet_like", mobilenet)):
        data = dict(base, build_dir=str(tmp / name))
        if model is not None:
            data["model"], data["data"] = model, {}
        cfg = parse_config(data, source=str(tmp / name / "edgeship.toml"), path=tmp / name / "edgeship.toml")
        export(cfg, (Target.ONNX,), (Precision.FP32,))
        out.append(cfg.artifacts_dir / "onnx-fp32")
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--artifact", type=Path, action="append", help="an ONNX artifact dir (repeatable)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--runs", type=int, default=2000, help="measured runs per round and side")
    p.add_argument("--warmup-seconds", type=float, default=0.5)
    p.add_argument("--json", type=Path, help="also write the results here")
    p.add_argument("--export-only", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.export_only:
        print(json.dumps([str(a) for a in default_artifacts(args.export_only)]))
        return 0
    with tempfile.TemporaryDirectory(prefix="edgeship-bench-") as tmp:
        # export in a child process: torch (and its threads) must not live in the measuring one
        artifacts = args.artifact or [Path(a) for a in json.loads(subprocess.run(
            [sys.executable, __file__, "--export-only", tmp], check=True, capture_output=True, text=True
        ).stdout.strip().splitlines()[-1])]
        results = []
        for a in artifacts:
            r = compare(a, args.threads, args.rounds, args.runs, args.warmup_seconds)
            results.append(r)
            print(f"{a.parent.name}/{a.name}: runner {r['runner_median_us']:.2f} us, bare ORT "
                  f"{r['bare_median_us']:.2f} us, ratio {r['ratio']:.3f} "
                  f"({'within' if r['within_5pct'] else 'OUTSIDE'} 5%; rounds runner {r['runner_rounds_us']} "
                  f"bare {r['bare_rounds_us']})", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0 if all(r["within_5pct"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
