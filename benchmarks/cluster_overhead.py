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

4. Across hosts (``--namespaces``, default: when this runs as root): the same per-task cost and
   single-artifact profile with the nodes on hosts of their own (tests/netns.py: network and
   PID namespaces on a private bridge): ``ray start --head`` on one, ``edgeship worker`` on two
   (``ray start --address``), the submitter on a fourth joined with ``--num-cpus 0``. Every
   task's bytes then cross veth pairs and a bridge (real TCP, not loopback).

    .venv/bin/python benchmarks/cluster_overhead.py [--tasks 30] [--out FILE] [--namespaces auto|yes|no]
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


def _config(tmp: Path) -> Any:
    from tests.conftest import make_config

    return make_config(tmp, profile=FAST, devices={d: {"kind": "local"} for ds in DEVICES.values() for d in ds})


def _driver(address: str, tmp: Path, tasks: int) -> int:
    """Run on the submitting namespace host: the per-task cost and one profile, as JSON."""
    os.environ.pop("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", None)   # a real host address here, not loopback
    import ray

    from edgeship.api import profile
    from edgeship.types import Precision, Target

    cfg = _config(tmp)      # the same config (and build dir) as the main process's
    ray.init(address=address, log_to_driver=False, namespace="edgeship")
    sched = scheduling_overhead(cfg, tasks)
    sel = ((Target.ONNX,), (Precision.FP32,))
    profile(cfg, "d3", *sel, cluster=address)            # the node's worker process warm
    t0 = time.perf_counter()
    profile(cfg, "d3", *sel, cluster=address)
    print(json.dumps({"scheduling": sched, "one_artifact_cluster_s": time.perf_counter() - t0}))
    return 0


def across_namespaces(tmp: Path, tasks: int) -> dict[str, Any]:
    """Section 4: the lab on network-namespace hosts (root only)."""
    from tests import netns
    from tests.conftest import cli_project

    ray_tmp = Path(tempfile.mkdtemp(prefix="esl"))    # short: Ray's socket paths live under it
    try:
        with netns.Lab(["head", "A", "B", "ci"]) as lab:
            address = netns.start_head(lab["head"], ray_tmp / "head")
            for node, devices in DEVICES.items():
                (tmp / f"ns-{node}").mkdir()
                toml = cli_project(tmp / f"ns-{node}", append="".join(f'\n[devices.{d}]\nkind = "local"\n'
                                                                     for d in devices))
                netns.start_worker(lab[node], address, toml, devices, tmp / f"ns-{node}.log")
            netns.join_client(lab["ci"], address, ray_tmp / "ci")
            r = lab["ci"].run([sys.executable, str(Path(__file__).resolve()), "--driver", address,
                               "--tmp", str(tmp), "--tasks", str(tasks)], timeout=600, env=netns.ray_env())
            return json.loads(r.stdout.strip().splitlines()[-1])
    finally:
        import shutil

        shutil.rmtree(ray_tmp, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", type=int, default=30)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--namespaces", choices=("auto", "yes", "no"), default="auto",
                    help="also measure across network-namespace hosts (root; auto: when possible)")
    ap.add_argument("--driver", metavar="ADDRESS", help=argparse.SUPPRESS)    # section 4's submitter
    ap.add_argument("--tmp", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.driver:
        return _driver(args.driver, args.tmp, args.tasks)
    from tests import netns

    why = netns.skip_reason() if args.namespaces != "no" else "--namespaces no"
    if why and args.namespaces == "yes":
        print(f"cluster_overhead: --namespaces yes: {why}", file=sys.stderr)
        return 2

    import ray

    from edgeship.api import profile
    from edgeship.exporting.pipeline import export
    from edgeship.types import Precision, Target

    with tempfile.TemporaryDirectory(prefix="edgeship-lab-bench-") as t:
        tmp = Path(t)
        cfg = _config(tmp)
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
        ns = across_namespaces(tmp, args.tasks) if why is None else None
    out = {
        "schema": "edgeship.bench.cluster/1", "ray": ray.__version__, "cpu_count": os.cpu_count(),
        "machine": platform.machine(), "python": platform.python_version(),
        "scheduling": sched,
        "one_artifact_s": {"in_process": one_local, "cluster": one_lab, "added": one_lab - one_local},
        "four_devices_two_nodes_s": {"sequential": sequential, "cluster_cold": lab[0], "cluster_warm": lab[1],
                                     "speedup_warm": sequential / lab[1]},
        "namespaces": ({"scheduling": ns["scheduling"],
                        "one_artifact_s": {"in_process": one_local, "cluster": ns["one_artifact_cluster_s"],
                                           "added": ns["one_artifact_cluster_s"] - one_local}}
                       if ns else {"skipped": why}),
    }
    text = json.dumps(out, indent=2)
    def brief(block: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in block.items() if k != "samples_ms"}

    shown = {k: v for k, v in out.items() if k not in ("scheduling", "namespaces")} | {"scheduling": brief(sched)}
    shown["namespaces"] = ({**out["namespaces"], "scheduling": brief(ns["scheduling"])} if ns else out["namespaces"])
    print(json.dumps(shown, indent=2))
    if ns:
        print(f"per task: {sched['median_ms']:.1f} ms on loopback (in-process cluster), "
              f"{ns['scheduling']['median_ms']:.1f} ms across namespace hosts")
    if args.out:
        args.out.write_text(text + "\n")
    ok = sched["median_ms"] < sched["goal_ms"]
    print(f"scheduling overhead {sched['median_ms']:.1f} ms per task: {'within' if ok else 'OVER'} the 50 ms goal")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
