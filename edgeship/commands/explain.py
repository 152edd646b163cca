from __future__ import annotations

import argparse
import json
import sys

from edgeship.commands import add_table_options, command, load_cfg


@command("explain", help="per-layer error of an INT8 artifact (SQNR vs FP32, gain if kept float), worst first", order=22,
         example="edgeship explain onnx-int8 --top 10")
class Explain:
    @staticmethod
    def add_arguments(p: argparse.ArgumentParser) -> None:
        p.add_argument("artifact", metavar="ARTIFACT",
                       help="an artifact name (e.g. onnx-int8) or its directory under build/artifacts "
                            "(another directory is refused)")
        p.add_argument("--samples", "-n", type=int, default=32, help="evaluation samples to run (default: 32)")
        p.add_argument("--top", type=int, default=None, help="show only the worst N layers")
        add_table_options(p)

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        from edgeship.accuracy.explain import explain
        from edgeship.accuracy.report import format_layers
        from edgeship.ui.progress import Progress

        if args.top is not None and args.top < 1:
            from edgeship.errors import UsageError

            raise UsageError(f"--top must be >= 1, got {args.top}")
        cfg = load_cfg(args)
        with Progress(sys.stderr) as progress:
            rec = explain(cfg, args.artifact, samples=args.samples, on_event=progress.event)
        if args.json:
            print(json.dumps(rec, indent=2))
            return 0
        kept = f"; kept float: {', '.join(rec['kept_float'])}" if rec["kept_float"] else ""
        print(f"{rec['artifact']} ({rec['cpu_class'] or 'any CPU'}): {len(rec['layers'])} quantized layers, "
              f"{rec['samples']} samples{kept}")
        print(format_layers(rec["layers"], args.top, wide=args.wide))
        tools = {r["tool"] for r in rec["layers"]}
        for t in sorted(tools):
            print(f"measured by {t}")
        return 0
