"""compare: the same inputs through every artifact of a model, in-process, side by side.

Each artifact is scored against the FP32 PyTorch reference (edgeship.metrics.fidelity:
cosine mean, top-1 agreement) and against every other artifact (pairwise top-1 agreement), so
one table shows which backend/precision drifts. An artifact whose runtime cannot run here is
SKIPPED with the reason.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from edgeship.config import Config
from edgeship.evaluation import evaluation_samples, run_artifact
from edgeship.metrics import fidelity
from edgeship.model import load_reference, run_reference
from edgeship.selection import find_artifacts
from edgeship.types import Precision, Target

REFERENCE = "pytorch-fp32"
DEFAULT_SAMPLES = 64


def compare(
    cfg: Config,
    targets: tuple[Target, ...] | None = None,
    precisions: tuple[Precision, ...] | None = None,
    samples: int = DEFAULT_SAMPLES,
    on_event: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run up to ``samples`` evaluation (else calibration) samples through every artifact.

    Returns {"model", "samples", "rows": {name: {"status", "skip_reason", "cosine_mean",
    "top1_agreement"}}, "pairwise": {name: {other: top-1 agreement}}}; the reference is a row.
    """
    from edgeship.runtimes.base import RuntimeUnavailable

    say = on_event or (lambda _m: None)
    refs = find_artifacts(cfg, targets, precisions)
    feeds = [s.inputs for s in evaluation_samples(cfg)[: max(1, samples)]]
    say(f"reference {cfg.model.name} on {len(feeds)} samples ...")
    model = load_reference(cfg)
    outputs: dict[str, list[list[np.ndarray]]] = {REFERENCE: [run_reference(model, f, cfg.model.inputs) for f in feeds]}
    rows: dict[str, dict[str, Any]] = {REFERENCE: {"status": "reference", "skip_reason": None}}
    for ref in refs:
        say(f"run {ref.name} ...")
        try:
            outputs[ref.name] = run_artifact(ref, feeds)
        except RuntimeUnavailable as exc:
            rows[ref.name] = {"status": "skipped", "skip_reason": str(exc)}
            continue
        rows[ref.name] = {"status": "ok", "skip_reason": None}
    for name, outs in outputs.items():
        fid = fidelity(outputs[REFERENCE], outs)
        rows[name].update(cosine_mean=fid["cosine_mean"], top1_agreement=fid["top1_agreement"])
    pairwise = {a: {b: fidelity(outputs[a], outputs[b])["top1_agreement"] for b in outputs} for a in outputs}
    return {"model": cfg.model.name, "samples": len(feeds), "rows": rows, "pairwise": pairwise}


def matrix_table(result: dict[str, Any], wide: bool = False) -> Any:
    """Agreement with the reference, then pairwise top-1 agreement: column k is the k-th artifact
    (numbered, so the matrix fits a terminal; ``wide`` names the columns ``top1=<artifact>``)."""
    from edgeship.table import Column, Table

    names = list(result["rows"])
    ran = [n for n in names if n in result["pairwise"]]
    number = {n: i + 1 for i, n in enumerate(ran)}
    cols = [Column("n", "#", "number"), Column("artifact", "artifact"),
            Column("cosine_mean", "cos mean", "number", fmt="{:.5f}"),
            Column("top1_agreement", "top1 agr", "percent", digits=3)]
    cols += [Column(f"top1={n}", f"top1={n}" if wide else str(number[n]), "percent", digits=3) for n in ran]
    cols.append(Column("notes", "notes", wrap=True))
    title = f"{result['model']}: {result['samples']} samples, agreement vs {REFERENCE} and pairwise top-1"
    table = Table(cols, title=title if wide else f"{title} (column k: artifact #k)")
    for name in names:
        r = result["rows"][name]
        if r["status"] == "skipped":
            table.add_row(artifact=name, notes=f"SKIPPED: {r['skip_reason'] or ''}".rstrip(": "))
            continue
        pair = result["pairwise"][name]
        table.add_row(n=number[name], artifact=name, cosine_mean=_f(r["cosine_mean"]),
                      top1_agreement=_f(r["top1_agreement"]), **{f"top1={o}": _f(pair[o]) for o in ran})
    return table


def format_matrix(result: dict[str, Any], width: int | None = None, wide: bool = False) -> str:
    return str(matrix_table(result, wide).render(width, wide=wide))


def _f(v: float | None) -> float | str:
    return "-" if v is None else v
