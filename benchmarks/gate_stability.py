"""Gate stability: a latency budget 30% above the measured p90 must PASS run after run.

Exports the demo's ONNX fp32 and int8 artifacts into a temp project, profiles them once, sets
``latency_ms.p90`` of each to 1.3x its measured p90, then runs ``edgeship profile`` +
``edgeship gate`` N times (default 10), each in fresh processes (new runner processes as well),
and prints the PASS count. A flaky gate (noise alone flipping the verdict) shows up here.

    .venv/bin/python benchmarks/gate_stability.py [--runs 10] [--margin 0.3]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EDGESHIP = [sys.executable, "-m", "edgeship"]
ARTIFACTS = ("fp32", "int8")


def run(tmp: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "EDGESHIP_CACHE_DIR": os.environ.get("EDGESHIP_CACHE_DIR", str(ROOT / "build" / "cache"))}
    return subprocess.run([*EDGESHIP, "--config", str(tmp / "edgeship.toml"), *argv], cwd=tmp, env=env,
                          capture_output=True, text=True, check=False)


def write_config(tmp: Path, budgets: str) -> None:
    text = (ROOT / "edgeship.toml").read_text()
    text = text[: text.index("[[budgets]]")] if "[[budgets]]" in text else text
    # drop the comment block that introduces the repo's example budgets
    text = re.sub(r"(\n#[^\n]*)+\n*$", "\n", text)
    (tmp / "edgeship.toml").write_text(text + "\n" + budgets)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--margin", type=float, default=0.3, help="budget = (1 + margin) x measured p90")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="edgeship-gate-stability-") as d:
        tmp = Path(d)
        write_config(tmp, "")
        for step in (("export", "--target", "onnx", "--precision", ",".join(ARTIFACTS)), ("profile", "--target", "onnx")):
            cp = run(tmp, *step)
            if cp.returncode != 0:
                print(cp.stdout + cp.stderr, file=sys.stderr)
                return 2
        budgets = []
        for prec in ARTIFACTS:
            res = json.loads((tmp / "build" / "results" / "local" / f"onnx-{prec}.json").read_text())
            samples = sorted(res["timing"]["samples_ns"])
            p90 = samples[int(0.9 * (len(samples) - 1))] / 1e6
            budget = (1 + args.margin) * p90
            print(f"onnx-{prec}: measured p90 {p90:.4f} ms over {len(samples)} samples -> budget p90 = {budget:.4f} ms")
            budgets.append(f'[[budgets]]\ndevice = "local"\ntarget = "onnx"\nprecision = "{prec}"\n'
                           f"latency_ms = {{ p90 = {budget:.6f} }}\n")
        write_config(tmp, "\n".join(budgets))
        passes, verdicts = 0, []
        for i in range(args.runs):
            prof = run(tmp, "profile", "--target", "onnx")
            cp = run(tmp, "gate", "--device", "local")
            report = json.loads((tmp / "build" / "reports" / "report.json").read_text())
            marks = [f"{c['artifact']}={c['verdict']}({c['value']:.4f})" for c in report["checks"]]
            ok = prof.returncode == 0 and cp.returncode == 0
            passes += ok
            verdicts.append(cp.returncode)
            print(f"run {i + 1:2d}: exit {cp.returncode}  " + "  ".join(marks))
        print(f"PASS {passes}/{args.runs} (exit codes {verdicts})")
        return 0 if passes == args.runs else 1


if __name__ == "__main__":
    sys.exit(main())
