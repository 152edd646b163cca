from __future__ import annotations

import argparse
from typing import Any

from edgeship.commands import add_selection, command


@command("profile", help="measure latency and memory of every artifact on a device", order=30)
class Profile:
    @staticmethod
    def add_arguments(p: argparse.ArgumentParser) -> None:
        add_selection(p, device=True)
        p.add_argument("--min-runs", type=int, help="measured runs at least (default: [profile] min_runs)")
        p.add_argument("--min-seconds", type=float, help="measure at least this long (default: [profile] min_seconds)")
        p.add_argument("--threads", type=int, help="runtime threads (default: [profile] threads)")

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        from edgeship.config import load_config
        from edgeship.profile import profile
        from edgeship.progress import Progress
        from edgeship.selection import parse_precisions, parse_targets

        from edgeship.errors import UsageError

        targets, precisions = parse_targets(args.target), parse_precisions(args.precision)
        for opt in ("min_runs", "threads"):
            if getattr(args, opt) is not None and getattr(args, opt) < 1:
                raise UsageError(f"--{opt.replace('_', '-')} must be >= 1, got {getattr(args, opt)}")
        if args.min_seconds is not None and args.min_seconds < 0:
            raise UsageError(f"--min-seconds must be >= 0, got {args.min_seconds}")
        cfg = load_config(args.config)
        with Progress() as progress:
            results = profile(cfg, args.device, targets, precisions, progress.event, args.min_runs,
                              args.min_seconds, args.threads)
        print(format_results(results))
        return 0


def format_results(results: list[dict[str, Any]]) -> str:
    from edgeship.stats import ns_to_ms, stability_warnings, summarize
    from edgeship.table import render

    head = ["artifact", "device", "p50 ms", "p90 ms", "p99 ms", "mean", "std", "MAD", "n", "init ms", "first ms",
            "mem init MB", "mem steady MB", "size KiB"]
    rows, notes = [], []
    for r in results:
        a = r["artifact"]
        if r["status"] != "ok":
            rows.append([a["name"], r["device"]["name"], "SKIPPED"] + [""] * 10 + [f"{a['size_bytes'] / 1024:.1f}"])
            notes.append(f"{a['name']}: SKIPPED: {r['skip_reason']}")
            continue
        t, m = r["timing"], r.get("memory") or {}
        s = summarize(ns_to_ms(t["samples_ns"]))
        rows.append([
            a["name"], r["device"]["name"], f"{s.p50:.3f}", f"{s.p90:.3f}", f"{s.p99:.3f}", f"{s.mean:.3f}",
            f"{s.std:.3f}", f"{s.mad:.3f}", s.count, f"{t['load_ns'] / 1e6:.1f}", f"{t['first_ns'] / 1e6:.2f}",
            _mb(m.get("init_peak_kb")), _mb(m.get("steady_peak_kb")), f"{a['size_bytes'] / 1024:.1f}",
        ])
        notes += [f"{a['name']}: {w}" for w in stability_warnings(s)]
    return render(head, rows) + ("\n" + "\n".join(f"warning: {n}" for n in notes) if notes else "")


def _mb(kb: Any) -> str:
    return "" if kb is None else f"{kb / 1024:.1f}"
