from __future__ import annotations

import argparse

from edgeship.commands import add_selection, command, load_selection


@command("eval", help="fidelity and accuracy of every artifact vs the FP32 PyTorch reference", order=20)
class Eval:
    @staticmethod
    def add_arguments(p: argparse.ArgumentParser) -> None:
        add_selection(p)

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        from edgeship.evaluation import evaluate, format_table
        from edgeship.progress import Progress

        cfg, targets, precisions = load_selection(args)
        with Progress() as progress:
            report = evaluate(cfg, targets, precisions, on_event=progress.event)
        print(format_table(report))
        print(f"wrote {cfg.build / 'reports' / 'eval.json'}")
        return 0
