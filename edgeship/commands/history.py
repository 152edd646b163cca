from __future__ import annotations

import argparse

from edgeship.commands import add_table_options, command

SCHEMA = "edgeship.history/1"


@command("history", help="latency, memory, size and fidelity per device x artifact across commits, and where they changed",
         order=47, example="edgeship history --device local --artifact onnx-fp32 --since 14d")
class History:
    @staticmethod
    def add_arguments(p: argparse.ArgumentParser) -> None:
        p.add_argument("--device", "-d", help="only these devices (comma-separated; default: every device with a history)")
        p.add_argument("--artifact", "-a", help="only these artifacts (comma-separated, e.g. onnx-fp32,tflite-int8)")
        p.add_argument("--since", metavar="WHEN",
                       help="only sessions from then on: a date (2025-06-01), a time, or an age (36h, 14d, 2w); "
                            "changes are still found against the sessions before it")
        p.add_argument("--out", metavar="HTML", help="where to write the page (default: build/reports/history.html)")
        p.add_argument("--no-html", action="store_true", help="print only (the page needs the 'report' extra)")
        add_table_options(p)

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        import json
        from pathlib import Path

        from edgeship.commands import load_cfg
        from edgeship.gating.trends import history_path_default, parse_since, trends
        from edgeship.reports.history import change_lines, history_table

        def names(text: str | None) -> list[str] | None:
            return [n.strip() for n in text.split(",") if n.strip()] if text else None

        since = parse_since(args.since) if args.since else None
        cfg = load_cfg(args)
        tr = trends(cfg, names(args.device), names(args.artifact), since)
        out = None
        if not args.no_html:
            out = _write_page(tr, Path(args.out) if args.out else history_path_default(cfg))
        if args.json:
            print(json.dumps({"schema": SCHEMA, "model": tr.model, "since": tr.since, "noise": tr.noise,
                              "html": None if out is None else str(out), "sessions": tr.records()}, indent=2))
            return 0
        import textwrap

        from edgeship.ui.table import show, terminal_width

        show(history_table(tr), wide=args.wide)
        lines = change_lines(tr)
        print("changes:" if lines else "changes: none (every session within the interval of the sessions before it)")
        width = None if args.wide else terminal_width()
        for line in lines:
            print("\n".join(textwrap.wrap(line, width, initial_indent="  ", subsequent_indent="    ",
                                           break_on_hyphens=False)) if width else f"  {line}")
        if out is not None:
            print(f"wrote {out}")
        return 0


def _write_page(tr, path):  # (Trends, Path) -> Path
    from edgeship.artifact.atomic import write_text_atomic
    from edgeship.errors import UsageError
    from edgeship.reports.history import render_history_html

    page = render_history_html(tr)
    if path.is_dir():
        raise UsageError(f"--out {path}: is a directory; name the HTML file to write")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, page)
    except OSError as exc:
        raise UsageError(f"{exc.filename or path}: cannot write the history page ({exc.strerror or exc}); "
                         "choose a writable --out") from None
    return path
