from __future__ import annotations

import argparse

from edgeship.commands import command


@command("gate", help="judge profile/eval results against [[budgets]]; exit 0 pass, 1 fail, 2 bad input", order=40)
class Gate:
    @staticmethod
    def add_arguments(p: argparse.ArgumentParser) -> None:
        p.add_argument("--device", "-d", help="latency/memory checks of this device only (default: every device the budgets name)")
        p.add_argument("--baseline", metavar="REPORT_JSON", help="flag latency regressions against an earlier report.json")
        p.add_argument("--threshold", type=float, help="minimum slowdown that counts as a regression, a fraction in [0, 1) (default 0.05)")
        p.add_argument("--force", action="store_true", help="compare with a baseline from different hardware")
        p.add_argument("--no-remeasure", action="store_true", help="decide on the saved samples only (no extra rounds)")
        p.add_argument("--cluster", metavar="ADDRESS", help="profile the budgeted devices on a Ray device lab first "
                       "(default: [cluster] address; see docs/cluster.md)")

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        from edgeship.config import load_config
        from edgeship.gating import check_threshold, gate, load_report
        from edgeship.progress import Progress
        from edgeship.reports import write_reports
        from edgeship.reports.terminal import render_terminal

        check_threshold(args.threshold)     # before any file is read
        cfg = load_config(args.config)
        baseline = load_report(args.baseline) if args.baseline else None
        remeasure = (lambda _d, _a: []) if args.no_remeasure else None
        address = args.cluster or cfg.cluster.address
        if address:     # measure on the lab first; failed devices then FAIL as missing evidence
            from edgeship.cluster.gate import lab_remeasure, profile_lab

            with Progress() as progress:
                profile_lab(cfg, address, args.device, progress.event)
            remeasure = remeasure or lab_remeasure(cfg, address)
        with Progress() as progress:
            result = gate(cfg, args.device, remeasure, baseline, args.force, args.threshold, progress.event)
        paths = write_reports(result.report, cfg.build / "reports")
        print(render_terminal(result.report))
        print("reports: " + ", ".join(str(p) for p in paths))
        return result.exit_code
