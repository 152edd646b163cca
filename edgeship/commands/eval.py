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
        p.add_argument("--layers", action="store_true", help="then per-layer fidelity from the tensors the device "
                       "computed (needs --device; docs/profile.md)")
        p.add_argument("--layer-samples", type=int, default=8, help="evaluation samples --layers sends (default: 8)")
        p.add_argument("--threshold", type=float, default=0.99,
                       help="--layers: a layer diverges when its worst-sample cosine is below this (default: 0.99)")
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
        if args.layers and (not args.device or args.cluster):
            raise UsageError("eval --layers needs --device NAME reached from this host ('local' for this one), "
                             "without --cluster")
        if args.layer_samples < 1 or not 0 < args.threshold <= 1:
            raise UsageError(f"--layer-samples must be >= 1 and --threshold in (0, 1], got {args.layer_samples} "
                             f"and {args.threshold}")
        cfg, targets, precisions = load_selection(args)
        with Progress(title=f"eval on {args.device or 'local'}") as progress:
            report = evaluate(cfg, targets, precisions, on_event=progress.event, device=args.device, chunk=args.chunk,
                              cluster=args.cluster)
        layers = None
        if args.layers:
            from edgeship.artifact.selection import find_artifacts
            from edgeship.measure.device_layers import device_layers

            refs = [r for r in find_artifacts(cfg, targets, precisions) if r.target.value in ("onnx", "tflite")]
            with Progress(title=f"layers on {args.device}") as progress:
                layers = device_layers(cfg, args.device, refs, args.layer_samples, args.threshold, progress.event)
        if args.json:
            import json

            keys = report.get("updated") or list(report["entries"])
            out = {**report, "entries": {k: report["entries"][k] for k in keys}}
            if layers is not None:
                out["device_layers"] = layers
            print(json.dumps(out, indent=2, default=str))
        else:
            from edgeship.ui.table import show

            show(eval_table(report), wide=args.wide)
            for rec in (layers or {}).values():
                print()
                print(format_device_layers(rec, wide=args.wide))
            print(f"wrote {eval_path(cfg)}")
        return 0


def format_device_layers(rec: dict, limit: int | None = None, wide: bool = False) -> str:
    """One artifact's per-layer fidelity on a device: the first divergent layer, then every layer."""
    from edgeship.ui.table import Column, Table

    head = f"layers of {rec['artifact']} on {rec['device']}"
    if rec["status"] != "ok":
        return f"{head}: {str(rec['status']).upper()}: {rec.get('skip_reason')}"
    first = rec.get("first_divergent")
    head += (f" ({len(rec['layers'])} layers vs {rec['reference']['artifact']}): first divergent layer: "
             + (f"{first['layer']} ({first.get('module') or first['op_type']}), cosine {first['cosine_min']:.4f} "
                f"< {rec['threshold']}" if first else f"none (every layer's cosine >= {rec['threshold']})"))
    table = Table([Column("layer", "layer"), Column("module", "module"), Column("op_type", "op"),
                   Column("cosine_min", "cos min", "number", fmt="{:.4f}"), Column("sqnr_db", "SQNR dB", "number", fmt="{:.1f}"),
                   Column("range", "range", priority=3), Column("mark", "")])
    for r in rec["layers"][:limit]:
        lo, hi = r.get("range") or (None, None)
        table.add_row(layer=r["layer"], module=r.get("module") or "", op_type=r.get("op_type") or "",
                      cosine_min=r["cosine_min"], sqnr_db=r.get("sqnr_db"),
                      range=f"[{lo:.3g}, {hi:.3g}]" if lo is not None and hi is not None else "",
                      mark="<- first divergent" if r is first else "")
    extra = f"\n({len(rec['unmatched'])} tensors without an FP32 twin by name: {', '.join(rec['unmatched'][:5])})" \
        if rec.get("unmatched") else ""
    return f"{head}\n{table.render(None, wide=wide)}{extra}"
