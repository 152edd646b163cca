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


def format_matrix(result: dict[str, Any]) -> str:
    from edgeship.table import render

    names = list(result["rows"])
    ran = [n for n in names if n in result["pairwise"]]
    head = ["artifact", "status", "cos mean", "top1 agr"] + [f"top1={n}" for n in ran]
    rows = []
    for name in names:
        r = result["rows"][name]
        if r["status"] == "skipped":
            rows.append([name, "SKIPPED", (r["skip_reason"] or "")[:60], ""] + [""] * len(ran))
            continue
        pair = result["pairwise"][name]
        rows.append([name, r["status"], _f(r["cosine_mean"], "{:.5f}"), _pct(r["top1_agreement"])]
                    + [_pct(pair[o]) for o in ran])
    return f"{result['model']}: {result['samples']} samples, agreement vs {REFERENCE} and pairwise top-1\n" + render(head, rows)


def _f(v: float | None, fmt: str) -> str:
    return "-" if v is None else fmt.format(v)


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"
