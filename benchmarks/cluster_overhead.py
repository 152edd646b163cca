"""Device-lab overhead: what a Ray task per device costs, and 4 devices on 2 nodes vs one by one.

A real Ray cluster on loopback (ray.cluster_utils.Cluster: a head and a second node as real
processes), nodes started with the resources and environment `edgeship worker` gives them.

1. Scheduling overhead: ``--tasks`` tasks, one after another, each on the exclusive device
   resource, carrying the packed demo onnx-fp32 artifact (a few KiB: the trivial artifact) and
   doing nothing with it; the median wall time per task. Goal: < 50 ms on loopback.
2. End to end: the same single artifact profiled in-process vs through the cluster (one round,
   a few runs): the difference is what the lab adds to a real measurement (task, object
   store, the node's worker importing edgeship, unpacking and checking the artifact).
3. 4 devices (all local-kind, two per node) profiled with ``profile --cluster`` vs the four
   in-process profiles one after another. The devices share this machine's cores here, so the
   parallel speed-up is bounded by the core count (2 on the dev box), not by the lab.

    .venv/bin/python benchmarks/cluster_overhead.py [--tasks 30] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("EDGESHIP_CACHE_DIR", str(ROOT / "build" / "cache"))   # the demo's trained weights
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")               # Ray answers 127.0.0.1
LOOPBACK = "127.0.0.1"
DEVICES = {"A": ["d1", "d2"], "B": ["d3", "d4"]}
FAST = {"threads": 1, "warmup_runs": 5, "warmup_seconds": 0.05, "min_runs": 100, "min_seconds": 0.2,
        "max_seconds": 5.0, "timeout_s": 60.0, "rounds": 1}


def _start_lab(tmp: Path) -> Any:
    import ray
    from ray.cluster_utils import Cluster

    from edgeship.cluster import NODE_CONFIG_ENV
    from edgeship.cluster.worker import ray_start_argv
    from tests.conftest import cli_project

    cluster = Cluster()
    for node, devices in DEVICES.items():
        (tmp / node).mkdir()
        toml = cli_project(tmp / node, append="".join(f'\n[devices.{d}]\nkind = "local"\n' for d in devices))
        argv = ray_start_argv("unused:0", devices)
        os.environ[NODE_CONFIG_ENV] = str(toml)
        cluster.add_node(num_cpus=1, resources=json.loads(argv[argv.index("--resources") + 1]),
                         include_dashboard=False, node_ip_address=LOOPBACK)
        del os.environ[NODE_CONFIG_ENV]
    ray.init(address=cluster.address, log_to_driver=False, namespace="edgeship", _node_ip_address=LOOPBACK)
    return cluster


def scheduling_overhead(cfg: Any, tasks: int) -> dict[str, Any]:
    import ray

    from edgeship.artifact.selection import find_artifacts
    from edgeship.cluster import device_resource
    from edgeship.cluster.transport import pack

    ref = find_artifacts(cfg)[0]
    payload = ray.put(pack(ref))
    nothing = ray.remote(num_cpus=0, max_retries=0)(lambda p: len(p["files"]))
    task = nothing.options(resources={device_resource("d3"): 1})     # on the second node
    ray.get(task.remote(payload))                                   # the node's worker process warm
    times = []
    for _ in range(tasks):
        t0 = time.perf_counter()
        ray.get(task.remote(payload))
        times.append((time.perf_counter() - t0) * 1e3)
    return {"tasks": tasks, "artifact_bytes": sum(p.stat().st_size for p in ref.path.rglob("*") if p.is_file()),
            "median_ms": statistics.median(times), "p90_ms": sorted(times)[int(0.9 * (len(times) - 1))],
            "goal_ms": 50.0, "samples_ms": times}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", type=int, default=30)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()

    import ray

    from edgeship.api import profile
    from edgeship.exporting.pipeline import export
    from edgeship.types import Precision, Target
    from tests.conftest import make_config

    with tempfile.TemporaryDirectory(prefix="edgeship-lab-bench-") as t:
        tmp = Path(t)
        devices = {d: {"kind": "local"} for ds in DEVICES.values() for d in ds}
        cfg = make_config(tmp, profile=FAST, devices=devices)
        export(cfg, (Target.ONNX,), (Precision.FP32,))
        cluster = _start_lab(tmp)
        try:
            sched = scheduling_overhead(cfg, args.tasks)
            sel = ((Target.ONNX,), (Precision.FP32,))
            t0 = time.perf_counter()
            profile(cfg, "d1", *sel)
            one_local = time.perf_counter() - t0
            t0 = time.perf_counter()
            profile(cfg, "d3", *sel, cluster=cluster.address)
            one_lab = time.perf_counter() - t0
            names = [d for ds in DEVICES.values() for d in ds]
            t0 = time.perf_counter()
            for d in names:
                profile(cfg, d, *sel)
            sequential = time.perf_counter() - t0
            lab = []
            for _ in range(2):    # cold: the nodes start a worker process per task; warm: reused
                t0 = time.perf_counter()
                profile(cfg, ",".join(names), *sel, cluster=cluster.address)
                lab.append(time.perf_counter() - t0)
        finally:
            ray.shutdown()
            cluster.shutdown()
    out = {
        "schema": "edgeship.bench.cluster/1", "ray": ray.__version__, "cpu_count": os.cpu_count(),
        "machine": platform.machine(), "python": platform.python_version(),
        "scheduling": sched,
        "one_artifact_s": {"in_process": one_local, "cluster": one_lab, "added": one_lab - one_local},
        "four_devices_two_nodes_s": {"sequential": sequential, "cluster_cold": lab[0], "cluster_warm": lab[1],
                                     "speedup_warm": sequential / lab[1]},
    }
    text = json.dumps(out, indent=2)
    print(json.dumps({k: v for k, v in out.items() if k != "scheduling"} | {
        "scheduling": {k: v for k, v in sched.items() if k != "samples_ms"}}, indent=2))
    if args.out:
        args.out.write_text(text + "\n")
    ok = sched["median_ms"] < sched["goal_ms"]
    print(f"scheduling overhead {sched['median_ms']:.1f} ms per task: {'within' if ok else 'OVER'} the 50 ms goal")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
