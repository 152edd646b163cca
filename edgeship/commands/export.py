from __future__ import annotations

import argparse
import sys

from edgeship.commands import add_selection, command, load_selection


@command("export", help="export the model to ONNX/TFLite/CoreML artifacts (fp32, fp16, int8 ...)", order=10)
class Export:
    @staticmethod
    def add_arguments(p: argparse.ArgumentParser) -> None:
        add_selection(p)
        p.add_argument("--for", dest="for_devices", action="append", metavar="DEVICE",
                       help="build INT8 for this device's CPU class (repeatable; default: the devices "
                            "[[budgets]] name, else this host)")
        p.add_argument("--from", dest="source", choices=("compressed", "original"), default=None,
                       help="the model to export: build/compressed/<model> (default when [compress] is set) or the original")

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        from edgeship.manifest import Manifest
        from edgeship.pipeline import export_all, plan
        from edgeship.progress import Progress
        from edgeship.table import render

        cfg, targets, precisions = load_selection(args)
        with Progress(sys.stderr, total=len(plan(cfg, targets, precisions))) as progress:
            summary = export_all(cfg, targets, precisions, on_event=progress.event,
                                 for_devices=tuple(args.for_devices) if args.for_devices else None, source=args.source)
        for name, m in summary.entries:
            if isinstance(m, Manifest):
                note = f"  ({'; '.join(m.notes)})" if m.notes else ""
                bf = f"  built for {m.built_for['cpu_class']}: {m.built_for['recipe']}" if m.built_for else ""
                print(f"{name}: {m.model_file} {m.size_bytes / 1024:.1f} KiB{bf}{note}")
        print(render(("artifact", "status", "size / why"), summary.rows()))
        if not summary.failures:
            return 0
        print(f"edgeship: {len(summary.failures)} of {len(summary.entries)} artifact(s) failed, the others were built:",
              file=sys.stderr)
        # one line per failure, last on stderr: the full reason the table may have shortened
        for f in summary.failures:
            print(f"edgeship: export {f.name} failed: {f.reason}", file=sys.stderr)
        return 1
