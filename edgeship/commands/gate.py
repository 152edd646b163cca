from __future__ import annotations

import argparse
from typing import Any

from edgeship.commands import add_table_options, command


@command("gate", help="judge profile/eval results against [[budgets]]; exit 0 pass, 1 fail, 2 bad input", order=40,
         example="edgeship gate --baseline main/report.json --all")
class Gate:
    @staticmethod
    def add_arguments(p: argparse.ArgumentParser) -> None:
        p.add_argument("--device", "-d", help="latency/memory checks of this device only (default: every device the budgets name)")
        p.add_argument("--baseline", metavar="PATH", help="flag latency regressions: against the baseline build's folder "
                       "(its artifacts measured now, interleaved with these: slower / not slower / unknown) or an "
                       "earlier report.json")
        p.add_argument("--threshold", type=float, help="minimum slowdown that counts as a regression, a fraction in [0, 1) (default 0.05)")
        p.add_argument("--force", action="store_true", help="compare with a baseline from different hardware")
        p.add_argument("--no-remeasure", action="store_true", help="decide on the saved samples only (no extra rounds)")
        p.add_argument("--cluster", metavar="ADDRESS", help="profile the budgeted devices on a Ray device lab first "
                       "(default: [cluster] address; see docs/cluster.md)")
        p.add_argument("--all", dest="all_rows", action="store_true",
                       help="show every check (default: FAIL and MARGINAL rows, a count of the others)")
        add_table_options(p)

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        from pathlib import Path

        from edgeship.commands import load_cfg
        from edgeship.errors import UsageError
        from edgeship.gating.judge import check_threshold, gate, load_report
        from edgeship.reports import write_reports
        from edgeship.ui.progress import Progress

        check_threshold(args.threshold)     # before any file is read
        cfg = load_cfg(args)
        build = Path(args.baseline) if args.baseline and Path(args.baseline).is_dir() else None
        baseline = load_report(args.baseline) if args.baseline and build is None else None
        remeasure = (lambda _d, _a: []) if args.no_remeasure else None
        address = args.cluster or cfg.cluster.address
        unmeasured: dict[str, str] = {}
        if build is not None and address:
            raise UsageError(f"--baseline {args.baseline}: a baseline build is measured interleaved from this host; "
                             "gate it without --cluster (or pass the baseline's report.json)")
        if address:     # measure on the lab first; failed devices then FAIL, their old results unjudged
            from edgeship.cluster.gate import lab_remeasure, profile_lab

            with Progress(title="profile on the lab") as progress:
                unmeasured = profile_lab(cfg, address, args.device, progress.event)
            remeasure = remeasure or lab_remeasure(cfg, address)
        with Progress(title="gate") as progress:
            result = gate(cfg, args.device, remeasure, baseline, args.force, args.threshold, progress.event,
                          unmeasured=unmeasured, baseline_build=build, more_pairs=not args.no_remeasure)
        paths = write_reports(result.report, cfg.build / "reports")
        show_report(result.report, args)
        if not args.json:
            print(reports_line(paths))
        return result.exit_code


def reports_line(paths: list[Any]) -> str:
    """'reports in DIR: a, b' (relative to the working directory when below it), short enough for a terminal."""
    import os
    from pathlib import Path

    dirs = {Path(p).parent for p in paths}
    if len(dirs) != 1:
        return "reports: " + ", ".join(str(p) for p in paths)
    where = Path(dirs.pop())
    try:
        shown = os.path.relpath(where)
        where = Path(shown) if not shown.startswith("..") else where
    except ValueError:   # another drive (Windows)
        pass
    return "reports: " + ", ".join(Path(p).name for p in paths) + f"\n  in {where}"


def show_report(report: dict[str, Any], args: Any) -> None:
    """The verdict on stdout (a table, or ``--json``), warnings and notes on stderr."""
    import json

    from edgeship.reports.terminal import failing, render_terminal, terminal_notes
    from edgeship.ui.table import is_tty, terminal_width, warn

    if getattr(args, "json", False):
        keep = ("schema", "model", "verdict", "counts", "checks", "warnings")
        print(json.dumps({**{k: report.get(k) for k in keep}, "failing": failing(report)}, indent=2, default=str))
    else:
        print(render_terminal(report, terminal_width(), wide=getattr(args, "wide", False),
                              all_rows=getattr(args, "all_rows", False), color=is_tty()))
    warn(terminal_notes(report), prefix="")
