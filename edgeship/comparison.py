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
    """Agreement with the reference, then pairwise top-1 agreement in %: column k is the k-th
    artifact (numbered, so the matrix fits a terminal; ``wide`` names them ``top1=<artifact>``).
    Skipped artifacts are listed under the table with their reason (``skipped_lines``)."""
    from edgeship.table import Column, Table

    names = list(result["rows"])
    ran = [n for n in names if n in result["pairwise"]]
    number = {n: i + 1 for i, n in enumerate(ran)}
    cols = [Column("n", "#", "number"), Column("artifact", "artifact"),
            Column("cosine_mean", "cos mean", "number", fmt="{:.5f}"),
            Column("top1_agreement", "top1 agr", "percent", digits=3)]
    cols += [Column(f"top1={n}", f"top1={n}" if wide else str(number[n]), "number",
                    fmt=(lambda v: f"{100 * v:.1f}%") if wide else (lambda v: f"{100 * v:.0f}")) for n in ran]
    title = f"{result['model']}: {result['samples']} samples, agreement vs {REFERENCE} and pairwise top-1"
    table = Table(cols, title=title if wide else f"{title} in % (column k: artifact #k)")
    for name in ran:
        r, pair = result["rows"][name], result["pairwise"][name]
        table.add_row(n=number[name], artifact=name, cosine_mean=_f(r["cosine_mean"]),
                      top1_agreement=_f(r["top1_agreement"]), **{f"top1={o}": _f(pair[o]) for o in ran})
    return table


def skipped_lines(result: dict[str, Any], width: int | None = None) -> list[str]:
    """One line per skip reason, naming the artifacts it skipped (wrapped at ``width``)."""
    import textwrap

    by_reason: dict[str, list[str]] = {}
    for name, r in result["rows"].items():
        if r["status"] == "skipped":
            by_reason.setdefault(r["skip_reason"] or "no reason given", []).append(name)
    lines = [f"SKIPPED {', '.join(names)}: {reason}" for reason, names in by_reason.items()]
    if width is None:
        return lines
    return [w for ln in lines for w in textwrap.wrap(ln, width, subsequent_indent="  ", break_on_hyphens=False)]


def format_matrix(result: dict[str, Any], width: int | None = None, wide: bool = False) -> str:
    from edgeship.table import PLAIN_WIDTH

    return "\n".join([str(matrix_table(result, wide).render(width, wide=wide)),
                      *skipped_lines(result, None if wide else width or PLAIN_WIDTH)])


def _f(v: float | None) -> float | str:
    return "-" if v is None else v
