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
        p.add_argument("--device", "-d", help="beside the host-side ranking, what this [devices.NAME] measured: per-layer "
                       "fidelity ('eval --device NAME --layers') and per-op time ('profile --device NAME --ops')")
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
        if args.device:
            return _with_device(cfg, args, rec)
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


def _with_device(cfg: object, args: argparse.Namespace, rec: dict) -> int:
    """Host ranking, device fidelity and device op time side by side; missing or stale device
    evidence is a line saying which command to run, never a blank taken for a clean layer."""
    from edgeship.accuracy.device_layers import side_by_side
    from edgeship.artifact.eval_file import entry_key, load_eval
    from edgeship.measure.op_profile import load_ops
    from edgeship.ui.table import Column, Table

    name, digest, dev = rec["artifact"], rec["artifact_digest"], args.device
    t, p = name.split("-", 1)
    layers = ((load_eval(cfg) or {}).get("device_layers") or {}).get(entry_key(dev, name))  # type: ignore[arg-type]
    notes = []
    if layers is None or layers.get("artifact_digest") != digest:
        notes.append(f"no per-layer fidelity of this build from '{dev}'" + (" (the one stored is of another build)"
                     if layers else "") + f": run 'edgeship eval --device {dev} --layers -t {t} -p {p}'")
        layers = None
    elif layers.get("status") != "ok":
        notes.append(f"per-layer fidelity on '{dev}': {layers['status'].upper()}: {layers.get('skip_reason')}")
    ops = load_ops(cfg, dev, name, digest)  # type: ignore[arg-type]
    if ops is None:
        notes.append(f"no op profile of this build from '{dev}': run 'edgeship profile --device {dev} --ops -t {t} -p {p}'")
    elif ops.get("status") != "ok":
        notes.append(f"op times on '{dev}': {ops['status'].upper()}: {ops.get('skip_reason')}")
    elif ops.get("times_skipped"):
        notes.append(f"op times on '{dev}': SKIPPED ({ops['times_skipped']})")
    rows = side_by_side(rec, layers, ops)
    if args.json:
        print(json.dumps({"artifact": name, "device": dev, "artifact_digest": digest, "host": rec, "device_layers": layers,
                          "ops": ops, "side_by_side": rows, "notes": notes}, indent=2))
        return 0
    first = (layers or {}).get("first_divergent")
    print(f"{name} on '{dev}' beside the host-side ranking ({rec['samples']} samples here"
          + (f", {len(layers['layers'])} layers there" if layers and layers.get('layers') else "") + ")")
    if first:
        print(f"first divergent layer on '{dev}': {first['layer']} ({first.get('module') or first['op_type']}), "
              f"cosine {first['cosine_min']:.4f} < {layers['threshold']}")  # type: ignore[index]
    table = Table([Column("layer", "layer"), Column("module", "module"), Column("host_sqnr_db", "host SQNR", "number", fmt="{:.1f}"),
                   Column("gain", "gain if float", "number", fmt="{:+.0%}"),
                   Column("device_cosine_min", "device cos", "number", fmt="{:.4f}"),
                   Column("device_sqnr_db", "device SQNR", "number", fmt="{:.1f}"),
                   Column("op_p50_ms", "op p50", "time"), Column("mark", "")])
    for r in rows[:args.top]:
        table.add_row(layer=r["layer"], module=r.get("module") or "", host_sqnr_db=r["host_sqnr_db"], gain=r["gain_if_float"],
                      device_cosine_min=r["device_cosine_min"], device_sqnr_db=r["device_sqnr_db"],
                      op_p50_ms=r["op_p50_ms"], mark="<- first divergent" if r["first_divergent"] else "")
    print(table.render(None, wide=args.wide))
    for n in notes:
        print(f"note: {n}")
    return 0
