from __future__ import annotations

import argparse
import sys
from typing import Any

from edgeship.commands import add_selection, add_table_options, command, load_selection


@command("export", help="export the model to ONNX/TFLite/CoreML artifacts (fp32, fp16, int8 ...)", order=10,
         example="edgeship export -t onnx,tflite -p fp32,int8 --for pi5")
class Export:
    @staticmethod
    def add_arguments(p: argparse.ArgumentParser) -> None:
        add_selection(p)
        p.add_argument("--for", dest="for_devices", action="append", metavar="DEVICE",
                       help="build INT8 for this device's CPU class (repeatable; default: the devices "
                            "[[budgets]] name, else this host)")
        p.add_argument("--from", dest="source", choices=("compressed", "original"), default=None,
                       help="the model to export: build/compressed/<model> (default when [compress] is set) or the original")
        add_table_options(p)

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        from edgeship.exporting.pipeline import export_all, plan
        from edgeship.ui.progress import Progress

        cfg, targets, precisions = load_selection(args)
        # the first line at once: loading torch and the model takes seconds before the first step
        with Progress(sys.stderr, total=len(plan(cfg, targets, precisions)), title="export: loading the model") as progress:
            summary = export_all(cfg, targets, precisions, on_event=progress.event,
                                 for_devices=tuple(args.for_devices) if args.for_devices else None, source=args.source)
        table = export_table(summary)
        if args.json:
            import json

            print(json.dumps({"artifacts": table.records(), "dir": str(cfg.artifacts_dir)}, indent=2))
        else:
            from edgeship.ui.table import show

            show(table, wide=args.wide)
        if not summary.failures:
            return 0
        print(f"edgeship: {len(summary.failures)} of {len(summary.entries)} artifact(s) failed, the others were built:",
              file=sys.stderr)
        # one line per failure, last on stderr: the full reason the table may have shortened
        for f in summary.failures:
            print(f"edgeship: export {f.name} failed: {f.reason}", file=sys.stderr)
        return 1


def export_table(summary: Any) -> Any:
    """One row per requested artifact: built (file, size, the CPU class and recipe, notes) or failed (why)."""
    from edgeship.artifact.manifest import Manifest
    from edgeship.ui.table import Column, Table

    table = Table([
        Column("artifact", "artifact"), Column("status", "status"), Column("file", "file", priority=2),
        Column("size_bytes", "size", "bytes"), Column("built_for", "built for", priority=1),
        Column("notes", "notes / why", wrap=True),
    ])
    for name, m in summary.entries:
        if isinstance(m, Manifest):
            bf = f"{m.built_for['cpu_class']}: {m.built_for['recipe']}" if m.built_for else None
            table.add_row(artifact=name, status="built", file=m.model_file, size_bytes=m.size_bytes,
                          built_for=bf, notes="; ".join(m.notes))
        else:
            table.add_row(artifact=name, status="FAILED", notes=m.reason)
    return table
