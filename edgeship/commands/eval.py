from __future__ import annotations

import argparse

from edgeship.commands import add_selection, command


@command("eval", help="fidelity and accuracy of every artifact vs the FP32 PyTorch reference", order=20)
class Eval:
    @staticmethod
    def add_arguments(p: argparse.ArgumentParser) -> None:
        add_selection(p)

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        from edgeship.config import load_config
        from edgeship.evaluation import evaluate, format_table
        from edgeship.progress import Progress
        from edgeship.selection import parse_precisions, parse_targets

        targets, precisions = parse_targets(args.target), parse_precisions(args.precision)
        cfg = load_config(args.config)
        with Progress() as progress:
            report = evaluate(cfg, targets, precisions, on_event=progress.event)
        print(format_table(report))
        print(f"wrote {cfg.build / 'reports' / 'eval.json'}")
        return 0
