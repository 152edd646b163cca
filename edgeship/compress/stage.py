"""Run the [compress] steps in order, measuring every intermediate model honestly.

Each row of the table is measured on the evaluation set against the labels and against the
original FP32 model (the teacher): parameters, MACs, FP32 bytes, accuracy and its drop from
the original. The final model goes to build/compressed/<model>/, the table to
build/reports/compress.json.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from functools import lru_cache
from typing import Any

import numpy as np

from edgeship.artifact.atomic import write_json_atomic
from edgeship.compress.base import Context, get_step
from edgeship.compress.measure import measure, stacked
from edgeship.compress.store import save
from edgeship.config import Config
from edgeship.errors import UsageError
from edgeship.lazy import require


def compress(cfg: Config, on_event: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Compress the configured model; returns the compressed manifest (also written to disk)."""
    say = on_event or (lambda _m: None)
    if not cfg.compress.steps:
        raise UsageError(f"{cfg.path or 'edgeship.toml'}: no [compress] steps; add e.g. "
                         "[[compress.steps]] kind = \"prune\" sparsity = 0.5 (see docs/compress.md)")
    torch = require("torch", "torch")
    steps = [get_step(s, i) for i, s in enumerate(cfg.compress.steps)]
    ctx = _context(cfg, say)
    for s in steps:            # every impossible request is reported before any work
        s.check(ctx)
    from edgeship.model.reference import load_reference, synthetic_inputs

    teacher = load_reference(cfg)
    example = tuple(torch.from_numpy(a) for a in synthetic_inputs(cfg.model.inputs).values())
    ctx.teacher, ctx.example = teacher, example
    x_ev, y_ev = ctx.evaluation()
    names = ctx.input_names
    say(f"original {cfg.model.name} on {len(next(iter(x_ev.values())))} evaluation rows ...")
    original = measure(teacher, example, x_ev, y_ev, names)
    teacher_pred = original.pop("pred")
    rows = [_row("original", original, original)]
    records: list[dict[str, Any]] = []
    notes: list[str] = []
    student = copy.deepcopy(teacher)
    torch.manual_seed(cfg.compress.seed)
    for s in steps:
        say(f"{s.key}: {s.kind} ...")
        res = s.apply(student, ctx)
        student = res.model
        m = measure(student, example, x_ev, y_ev, names, teacher_pred)
        m.pop("pred")
        rows.append(_row(s.kind, m, original))
        records.append({"kind": s.kind, "config": s.cfg.model_dump(mode="json"), **res.record})
        notes += res.notes
    final = {k: v for k, v in rows[-1].items() if k != "step"}
    manifest = {
        "model": cfg.model.name, "steps": records, "table": rows, "notes": notes,
        "original": {k: v for k, v in rows[0].items() if k != "step"}, "compressed": final,
        "evaluation": {"source": cfg.data.evaluation or cfg.data.calibration, "labels": y_ev is not None},
    }
    out = save(cfg, student, example, manifest)
    say(f"wrote {out}")
    write_json_atomic(cfg.build / "reports" / "compress.json", {"schema": "edgeship.compress/1", **manifest,
                                                                "path": str(out)})
    return manifest


def _row(step: str, m: dict[str, Any], original: dict[str, Any]) -> dict[str, Any]:
    acc, ref = m["accuracy"], original["accuracy"]
    return {
        "step": step, "params": m["params"], "macs": m["macs"], "size_bytes": m["size_bytes"],
        "accuracy": acc, "accuracy_drop": None if acc is None or ref is None else ref - acc,
        "top1_agreement": m.get("top1_agreement"),
        "params_ratio": original["params"] / max(m["params"], 1),
    }


def _context(cfg: Config, say: Callable[[str], None]) -> Context:
    from edgeship.calibration import DataSource, load_samples

    names = tuple(s.name for s in cfg.model.inputs)

    @lru_cache(maxsize=1)
    def evaluation() -> tuple[dict[str, np.ndarray], np.ndarray | None]:
        from edgeship.calibration import evaluation_samples

        return stacked(evaluation_samples(cfg))

    train = None
    if cfg.data.train is not None:
        source = DataSource(cfg.data.train, "data.train", cfg.root)

        @lru_cache(maxsize=1)
        def train() -> tuple[dict[str, np.ndarray], np.ndarray | None]:
            return stacked(load_samples(source, cfg.model.inputs, None, cfg.data.label_key))

    return Context(teacher=None, example=(), input_names=names, seed=cfg.compress.seed, train=train,
                   evaluation=evaluation, say=say, train_ref=cfg.data.train)


def format_table(manifest: dict[str, Any]) -> str:
    from edgeship.ui.table import render

    head = ["step", "params", "MACs", "FP32 KiB", "x smaller", "accuracy", "drop", "agree"]
    rows = []
    for r in manifest["table"]:
        rows.append([
            r["step"], f"{r['params']:,}", "-" if r["macs"] is None else f"{r['macs']:,}",
            f"{r['size_bytes'] / 1024:.1f}", f"{r['params_ratio']:.2f}x",
            "-" if r["accuracy"] is None else f"{100 * r['accuracy']:.2f}%",
            "-" if r["accuracy_drop"] is None else f"{100 * r['accuracy_drop']:+.2f} pt",
            "-" if r["top1_agreement"] is None else f"{100 * r['top1_agreement']:.1f}%",
        ])
    text = f"{manifest['model']}: compress ({' -> '.join(s['kind'] for s in manifest['steps'])})\n" + render(head, rows)
    if manifest["notes"]:
        text += "\n" + "\n".join(f"note: {n}" for n in manifest["notes"])
    return text
