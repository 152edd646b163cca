from __future__ import annotations

import argparse

from edgeship.commands import add_selection, add_table_options, command, load_selection


@command("compare", help="agreement matrix: the same inputs through every artifact and the reference", order=25,
         example="edgeship compare -t onnx,tflite -n 128")
class Compare:
    @staticmethod
    def add_arguments(p: argparse.ArgumentParser) -> None:
        add_selection(p)
        p.add_argument("--samples", "-n", type=int, default=64, help="evaluation samples to run (default: 64)")
        add_table_options(p)

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        from edgeship.errors import UsageError
        from edgeship.measure.compare import compare, matrix_table, skipped_lines
        from edgeship.ui.progress import Progress

        if args.samples < 1:
            raise UsageError(f"--samples must be >= 1, got {args.samples}")
        cfg, targets, precisions = load_selection(args)
        with Progress(title="compare") as progress:
            result = compare(cfg, targets, precisions, samples=args.samples, on_event=progress.event)
        if args.json:
            import json

            print(json.dumps(result, indent=2, default=str))
        else:
            from edgeship.ui.table import show, terminal_width

            show(matrix_table(result, args.wide), wide=args.wide)
            for line in skipped_lines(result, None if args.wide else terminal_width()):
                print(line)
        return 0
