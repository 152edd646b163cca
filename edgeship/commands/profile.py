from __future__ import annotations

import argparse
from typing import Any

from edgeship.commands import add_selection, add_table_options, command, load_selection


@command("profile", help="measure latency and memory of every artifact on a device", order=30,
         example="edgeship profile -t onnx -p int8 --min-runs 200 --max-seconds 10")
class Profile:
    @staticmethod
    def add_arguments(p: argparse.ArgumentParser) -> None:
        add_selection(p, device=True)
        p.add_argument("--warmup-runs", type=int, help="warmup runs at least (default: [profile] warmup_runs)")
        p.add_argument("--min-runs", type=int, help="measured runs at least (default: [profile] min_runs)")
        p.add_argument("--min-seconds", type=float, help="measure at least this long (default: [profile] min_seconds)")
        p.add_argument("--max-seconds", type=float,
                       help="stop measuring an artifact after this long (default: [profile] max_seconds)")
        p.add_argument("--threads", type=int, help="runtime threads (default: [profile] threads)")
        p.add_argument("--cluster", metavar="ADDRESS", help="measure on a Ray device lab (--device may then name "
                       "several, comma-separated; default: [cluster] address; see docs/cluster.md)")
        p.add_argument("--ops", action="store_true", help="then per-op times from the runtime's profiler, in a separate "
                       "run after the latency rounds (never latency samples; docs/profile.md)")
        p.add_argument("--op-runs", type=int, default=100, help="profiled runs of --ops (default: 100)")
        p.add_argument("--top", type=int, default=10, help="slowest ops shown per artifact with --ops (default: 10)")
        add_table_options(p)

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        from edgeship.api import profile
        from edgeship.config import MAX_SECONDS
        from edgeship.errors import DeviceError, UsageError
        from edgeship.ui.progress import Progress

        for opt in ("min_runs", "threads"):
            if getattr(args, opt) is not None and getattr(args, opt) < 1:
                raise UsageError(f"--{opt.replace('_', '-')} must be >= 1, got {getattr(args, opt)}")
        if args.min_seconds is not None and not 0 <= args.min_seconds <= MAX_SECONDS:   # also refuses nan
            raise UsageError(f"--min-seconds must be between 0 and {MAX_SECONDS:g}, got {args.min_seconds:g}")
        if args.warmup_runs is not None and args.warmup_runs < 0:
            raise UsageError(f"--warmup-runs must be >= 0, got {args.warmup_runs}")
        if args.max_seconds is not None and not 0 < args.max_seconds <= MAX_SECONDS:
            raise UsageError(f"--max-seconds must be > 0 and <= {MAX_SECONDS:g}, got {args.max_seconds:g}")
        if args.ops and (args.cluster or "," in args.device):
            raise UsageError("profile --ops measures one device reached from this host; drop --cluster and name one --device")
        for opt in ("op_runs", "top"):
            if getattr(args, opt) < 1:
                raise UsageError(f"--{opt.replace('_', '-')} must be >= 1, got {getattr(args, opt)}")
        cfg, targets, precisions = load_selection(args)
        cfg = _with_overrides(cfg, args)
        try:
            with Progress(title=f"profile on {args.device}") as progress:
                results = profile(cfg, args.device, targets, precisions, progress.event, args.min_runs,
                                  args.min_seconds, args.threads, cluster=args.cluster)
        except DeviceError as exc:
            if getattr(exc, "results", None):     # a lab run: the devices that finished are shown, then the errors
                _show(exc.results, cfg, args)   # type: ignore[attr-defined]
            raise
        ops = None
        if args.ops:
            from edgeship.measure.op_profile import profile_ops

            with Progress(title=f"op profile on {args.device}") as progress:
                ops = profile_ops(cfg, args.device, targets, precisions, progress.event, args.op_runs, args.threads)
        _show(results, cfg, args, ops)
        for device in args.device.split(","):
            _say_int8_speed(cfg, device)
        return 0


def _with_overrides(cfg: Any, args: argparse.Namespace) -> Any:
    """[profile] with --warmup-runs/--max-seconds applied (the config digest stays the file's)."""
    update = {k: getattr(args, k) for k in ("warmup_runs", "max_seconds") if getattr(args, k) is not None}
    if not update:
        return cfg
    return cfg.model_copy(update={"profile": cfg.profile.model_copy(update=update)})


def _show(results: list[dict[str, Any]], cfg: Any, args: argparse.Namespace,
          ops: list[dict[str, Any]] | None = None) -> None:
    """The table on stdout (or ``--json``), its warnings on stderr; with ``ops`` the op profiles."""
    import json

    from edgeship.ui.table import show, warn

    table, notes = profile_table(results, cfg)
    if args.json:
        out: dict[str, Any] = {"results": table.records(), "warnings": notes}
        if ops is not None:
            out["ops"] = [ops_record(r) for r in ops]
        print(json.dumps(out, indent=2))
    else:
        show(table, wide=args.wide)
        for r in ops or []:
            print()
            print(format_ops(r, getattr(args, "top", 10), wide=args.wide))
    warn(notes)


def ops_record(r: dict[str, Any]) -> dict[str, Any]:
    """One artifact's op profile for ``--json``: slowest first; times null where not representative."""
    skipped = r.get("times_skipped")
    ops = [{"name": o["name"], "op_type": o["op_type"], "p50_ms": None if skipped else o["p50_ms"],
            "p90_ms": None if skipped else o["p90_ms"], "share": None if skipped else o.get("share")}
           for o in r.get("ops") or []]
    if skipped:      # emulated: qemu's times rank nothing; list the ops in execution order
        ops = [o for _, o in sorted(zip([x.get("order", 0) for x in r["ops"]], ops), key=lambda p: p[0])]
    types = [{"op_type": t["op_type"], "nodes": t["nodes"], "p50_ms": None if skipped else t["p50_ms"]}
             for t in r.get("op_types") or []]
    return {"artifact": r["artifact"]["name"], "device": r["device"]["name"], "status": r["status"],
            "reason": r.get("skip_reason") or skipped, "artifact_digest": r["artifact"]["artifact_digest"],
            "runs": r.get("runs"), "ops": ops, "op_types": types,
            "ops_sum_ms": None if skipped or r["status"] != "ok" else r["total"]["p50_ms"],
            "latency": r.get("latency")}


def format_ops(r: dict[str, Any], top: int = 10, wide: bool = False) -> str:
    """The slowest ``top`` ops of one artifact as a table, headed by how they add up."""
    from edgeship.ui.table import Column, Table

    a, dev = r["artifact"]["name"], r["device"]["name"]
    if r["status"] != "ok":
        return f"op profile of {a} on {dev}: {r['status'].upper()}: {r.get('skip_reason')}"
    head = f"op profile of {a} on {dev} ({r['runs']} runs, {r['runtime'].get('name')} profiler, {r['nodes']} nodes)"
    skipped = r.get("times_skipped")
    if skipped:
        names = ", ".join(o["name"] for o in sorted(r["ops"], key=lambda o: o.get("order", 0))[:top])
        return f"{head}: times SKIPPED ({skipped}); ops in execution order: {names}"
    lat = r.get("latency") or {}
    if lat.get("median_ms") is not None:
        head += (f": ops sum {lat['ops_sum_ms']:.4g} ms = {lat['coverage']:.0%} of the median latency "
                 f"{lat['median_ms']:.4g} ms; profiling overhead {lat['overhead']:+.0%}")
    table = Table([Column("name", "op"), Column("op_type", "type"), Column("p50_ms", "p50", "time"),
                   Column("p90_ms", "p90", "time"), Column("share", "share", "number", fmt="{:.0%}")])
    for o in r["ops"][:top]:
        table.add_row(name=o["name"], op_type=o["op_type"], p50_ms=o["p50_ms"], p90_ms=o["p90_ms"], share=o.get("share"))
    lines = [head, table.render(None, wide=wide)]
    if lat.get("note"):
        lines.append(f"note: {lat['note']}")
    return "\n".join(lines)


def _say_int8_speed(cfg: Any, device: str) -> None:
    """One stderr line per static or dynamic INT8 artifact not >= 1.1x faster than FP32 on this
    device (a weight-only build's line says it saves size, not time).

    Judged on every saved result of the device, so profiling only the INT8 artifacts still
    compares them with the FP32 measured earlier.
    """
    from edgeship.gating.int8_speed import int8_does_not_pay
    from edgeship.measure.profile import load_results
    from edgeship.ui.table import warn

    warn(int8_does_not_pay(load_results(cfg, device)), prefix="note: ")


def profile_table(results: list[dict[str, Any]], cfg: Any = None) -> tuple[Any, list[str]]:
    """The profile table and its warnings; with ``cfg``, sample-count warnings only for gated statistics."""
    import numpy as np

    from edgeship.measure.profile import gated_statistics, latency_limits
    from edgeship.measure.rounds import BUSY_PRESSURE, CONTENDED_SHARE, cpu_pressures, cpu_shares
    from edgeship.measure.stats import ns_to_ms, stability_warning, timing_summary
    from edgeship.ui.table import Column, Table

    table = Table([
        Column("artifact", "artifact"), Column("device", "device", priority=2),
        Column("p50_ms", "p50", "time"), Column("p90_ms", "p90", "time"), Column("p99_ms", "p99", "time", priority=3),
        Column("mean_ms", "mean", "time", priority=7), Column("std_ms", "std", "time", priority=8),
        Column("mad_ms", "MAD", "time", priority=6), Column("n", "n", "number", priority=5),
        Column("init_ms", "init", "time", priority=9), Column("first_ms", "first", "time", priority=9),
        Column("mem_init_bytes", "mem init", "bytes", priority=7), Column("mem_steady_bytes", "mem", "bytes", priority=2),
        Column("size_bytes", "size", "bytes", priority=1),
        Column("out_cos", "out cos", "number", priority=3, fmt="{:.5f}"),
        Column("notes", "notes", wrap=True),
    ])
    notes: list[str] = []
    for r in results:
        a = r["artifact"]
        row: dict[str, Any] = {"artifact": a["name"], "device": r["device"]["name"], "size_bytes": a.get("size_bytes")}
        if r["status"] != "ok":
            table.add_row(**row, notes=f"SKIPPED: {r['skip_reason']}")
            continue
        t, m = r["timing"], r.get("memory") or {}
        s = timing_summary(t)
        emulated = bool(t.get("emulated"))   # qemu-user board: shown, labelled, never gated
        out = r.get("outputs") or {}
        row.update(p50_ms=s.p50, p90_ms=s.p90, p99_ms=s.p99, mean_ms=s.mean, std_ms=s.std, mad_ms=s.mad, n=s.count,
                   init_ms=_ms(t.get("load_ns")), first_ms=_ms(t.get("first_ns")),
                   mem_init_bytes=_bytes(m.get("init_peak_kb")), mem_steady_bytes=_bytes(m.get("steady_peak_kb")),
                   out_cos=out.get("cosine"))
        if emulated:
            row["device"] += " (emulated)"
        row_notes = []
        notes += _output_warnings(r)
        if emulated:
            row_notes.append("emulated: timing not representative")
            notes.append(f"{a['name']}: emulated device: timing is not representative (latency and memory "
                         "budgets are SKIPPED)")
        elif t.get("samples_ns"):
            gated = ("p90",) if cfg is None else gated_statistics(cfg, r["device"]["name"], a["target"], a["precision"])
            rounds = [ns_to_ms(e["samples_ns"]) for e in t.get("rounds") or [] if e.get("samples_ns")]
            if not rounds:    # a result from before rounds: its samples are its one round
                rounds = [ns_to_ms(t["samples_ns"])]
            max_cv = cfg.gate.max_round_cv if cfg is not None else 0.10
            shares = cpu_shares(t)
            share = float(np.median(shares)) if shares else None
            # one line per artifact at most, and only for what changes a verdict (stats.stability_warning)
            limits = None if cfg is None else latency_limits(cfg, r["device"]["name"], a["target"], a["precision"])
            pressures = cpu_pressures(t)
            pressure = float(np.median(pressures)) if pressures else None
            w = stability_warning(s, gated, rounds, max_cv, share, CONTENDED_SHARE, limits, pressure, BUSY_PRESSURE)
            if w:
                notes.append(f"{a['name']}: {w}")
        else:
            row_notes.append(f"aggregates from {r['runtime'].get('name')}")
            notes.append(f"{a['name']}: aggregates printed by {r['runtime'].get('name')}; no per-run samples")
        table.add_row(**row, notes="; ".join(row_notes))
    if cfg is not None:
        notes += _noisy_sessions(results, cfg)
    return table, notes


def _noisy_sessions(results: list[dict[str, Any]], cfg: Any) -> list[str]:
    """A device whose sessions (build/history) vary more than ``gate.max_round_cv``: the gate
    will widen its latency intervals to that spread (docs/gate.md, Sessions)."""
    from edgeship.measure.sessions import device_noise

    out = []
    measured = {r["device"]["name"] for r in results
                if r["status"] == "ok" and (r.get("timing") or {}).get("samples_ns") and not r["timing"].get("emulated")}
    for device in sorted(measured):
        noise = device_noise(cfg, device, "p90")
        if noise is not None and noise.sessions and noise.sd > cfg.gate.max_round_cv:
            out.append(f"too noisy: {noise.describe(device)}, > {cfg.gate.max_round_cv:.0%}: latency verdicts on it "
                       "will be wide; pin CPUs or isolate the device (docs/gate.md, Sessions)")
    return out


def format_results(results: list[dict[str, Any]], cfg: Any = None, width: int | None = None,
                   wide: bool = False) -> str:
    """The profile table as text, then its warnings (the command prints those on stderr)."""
    table, notes = profile_table(results, cfg)
    return table.render(width, wide=wide) + ("\n" + "\n".join(f"warning: {n}" for n in notes) if notes else "")


def _output_warnings(r: dict[str, Any]) -> list[str]:
    """Outputs the device computed that are further from the reference than the export allowed."""
    from edgeship.exporters.base import MIN_EXPORT_COSINE
    from edgeship.types import Precision

    out, a = r.get("outputs") or {}, r["artifact"]
    bound = MIN_EXPORT_COSINE.get(Precision(a["precision"]))
    if "cosine" not in out or bound is None or out["cosine"] >= bound:
        return []
    return [(f"{a['name']}: outputs on '{r['device']['name']}' disagree with the FP32 reference (cosine "
             f"{out['cosine']:.4f} < {bound} that export requires of {a['precision']}); the device's runtime "
             "computes something else than the export host's")]


def _ms(ns: Any) -> float | None:
    return None if ns is None else ns / 1e6


def _bytes(kb: Any) -> int | None:
    return None if kb is None else int(kb) * 1024
