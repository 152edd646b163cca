from __future__ import annotations

import argparse
from pathlib import Path

from edgeship.commands import add_table_options, command


@command("report", help="render report.md/junit.xml/report.html from a saved report.json", order=45,
         example="edgeship report --from build/reports/report.json --out /tmp/pr-123")
class Report:
    @staticmethod
    def add_arguments(p: argparse.ArgumentParser) -> None:
        p.add_argument("--from", dest="source", metavar="REPORT_JSON", help="default: build/reports/report.json")
        p.add_argument("--out", metavar="DIR", help="output directory (default: next to the report.json)")
        p.add_argument("--baseline", metavar="REPORT_JSON", help="also show this earlier report side by side (HTML)")
        p.add_argument("--all", dest="all_rows", action="store_true",
                       help="show every check (default: FAIL and MARGINAL rows, a count of the others)")
        add_table_options(p)

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        from edgeship.commands.gate import reports_line, show_report
        from edgeship.gating.judge import load_report
        from edgeship.reports import write_reports
        from edgeship.reports.fmt import failing

        if args.source:
            src = Path(args.source)
        else:
            from edgeship.commands import load_cfg

            src = load_cfg(args).build / "reports" / "report.json"
        report = load_report(src)
        if args.baseline:
            report = {**report, "compare_to": load_report(Path(args.baseline))}
        out = Path(args.out) if args.out else src.parent
        if out.exists() and not out.is_dir():
            from edgeship.errors import UsageError

            raise UsageError(f"--out {out}: is a file, not a directory; pass a directory for the reports")
        paths = write_reports(report, out, json_too=False)
        show_report(report, args)
        if not args.json:
            print(reports_line(paths).replace("reports:", "wrote", 1))
        # like the gate's: from the checks' verdicts (load_report refused a file whose
        # ``passed`` fields contradict them), so CI reads the same answer from either command
        return 1 if failing(report) else 0
