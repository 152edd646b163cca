from __future__ import annotations

import argparse
import sys

from edgeship.commands import add_selection, command, load_selection


@command("export", help="export the model to ONNX/TFLite/CoreML artifacts (fp32, fp16, int8 ...)", order=10)
class Export:
    @staticmethod
    def add_arguments(p: argparse.ArgumentParser) -> None:
        add_selection(p)
        p.add_argument("--from", dest="source", choices=("compressed", "original"), default=None,
                       help="the model to export: build/compressed/<model> (default when [compress] is set) or the original")

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        from edgeship.pipeline import export, plan
        from edgeship.progress import Progress

        cfg, targets, precisions = load_selection(args)
        with Progress(sys.stderr, total=len(plan(cfg, targets, precisions))) as progress:
            manifests = export(cfg, targets, precisions, on_event=progress.event, source=args.source)
        for m in manifests:
            note = f"  ({'; '.join(m.notes)})" if m.notes else ""
            print(f"{m.target}-{m.precision}: {m.model_file} {m.size_bytes / 1024:.1f} KiB{note}")
        return 0
