from __future__ import annotations

import argparse

from edgeship.commands import command, load_cfg


@command("worker", help="join this host to a Ray device lab, advertising its checked devices (docs/cluster.md)",
         order=60, example="edgeship worker --cluster head:6379 --devices pi5,pixel8")
class Worker:
    @staticmethod
    def add_arguments(p: argparse.ArgumentParser) -> None:
        p.add_argument("--cluster", required=True, metavar="ADDRESS", help="the head's address (host:6379)")
        p.add_argument("--devices", required=True, help="[devices.NAME] of this host's edgeship.toml, comma-separated")
        p.add_argument("--num-cpus", type=int, help="CPUs this node offers Ray (default: Ray's count)")
        p.add_argument("--node-ip-address", metavar="IP", help="the address other nodes reach this one at")
        p.add_argument("--check-only", action="store_true", help="check the devices, print the ray start line, exit")

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        import subprocess

        from edgeship.cluster.worker import check_devices, ray_start_argv, worker_env
        from edgeship.errors import UsageError

        devices = [d.strip() for d in args.devices.split(",") if d.strip()]
        if not devices:
            raise UsageError("worker --devices: name at least one device")
        cfg = load_cfg(args)
        check_devices(cfg, devices)
        extra = (["--num-cpus", str(args.num_cpus)] if args.num_cpus is not None else []) + (
            ["--node-ip-address", args.node_ip_address] if args.node_ip_address else [])
        argv = ray_start_argv(args.cluster, devices, extra)
        print(f"worker: advertising {', '.join(devices)}: {subprocess.list2cmdline(argv)}", flush=True)
        if args.check_only:
            return 0
        return subprocess.run(argv, env=worker_env(cfg), check=False).returncode
