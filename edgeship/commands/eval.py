from __future__ import annotations

import argparse

from edgeship.commands import add_selection, add_table_options, command, load_selection


@command("eval", help="fidelity and accuracy of every artifact vs the FP32 PyTorch reference", order=20,
         example="edgeship eval -t onnx,tflite -p int8 --device pi5")
class Eval:
    @staticmethod
    def add_arguments(p: argparse.ArgumentParser) -> None:
        add_selection(p)
        p.add_argument("--device", "-d",
                       help="run the artifacts through the runner on this [devices.NAME] (default: in-process on "
                            "this host, recorded as 'local')")
        p.add_argument("--chunk", type=int, default=64,
                       help="samples per file pushed to the device at a time (default: 64)")
        p.add_argument("--cluster", metavar="ADDRESS", help="run --device on the Ray device-lab node that owns it "
                       "(default: [cluster] address; see docs/cluster.md)")
        add_table_options(p)

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        from edgeship.api import evaluate
        from edgeship.artifact.eval_file import eval_path
        from edgeship.errors import UsageError
        from edgeship.measure.evaluate import eval_table
        from edgeship.ui.progress import Progress

        if args.chunk < 1:
            raise UsageError(f"--chunk must be >= 1, got {args.chunk}")
        if args.cluster and not args.device:
            raise UsageError("eval --cluster needs --device NAME (the in-process eval runs on this host)")
        cfg, targets, precisions = load_selection(args)
        with Progress(title=f"eval on {args.device or 'local'}") as progress:
            report = evaluate(cfg, targets, precisions, on_event=progress.event, device=args.device, chunk=args.chunk,
                              cluster=args.cluster)
        if args.json:
            import json

            keys = report.get("updated") or list(report["entries"])
            print(json.dumps({**report, "entries": {k: report["entries"][k] for k in keys}}, indent=2, default=str))
        else:
            from edgeship.ui.table import show

            show(eval_table(report), wide=args.wide)
            print(f"wrote {eval_path(cfg)}")
        return 0
