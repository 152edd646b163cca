"""compare: the same inputs through every artifact of a model, in-process, side by side.

Each artifact is scored against the FP32 PyTorch reference (cosine mean over all outputs, and
the agreement metric of the model's outputs) and against every other artifact (the same
agreement, pairwise), so one table shows which backend/precision drifts. The agreement follows
the output kinds (edgeship/measure/output_kinds.py, as ``eval`` does): top-1 agreement on the first
classification output; nearest-neighbour (retrieval) agreement on the first embedding output
when there is no classification output (argmax of an embedding means nothing); cosine when
every output is a regression. An artifact whose runtime cannot run here is SKIPPED with the
reason.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from edgeship.artifact.inprocess import run_artifact
from edgeship.artifact.selection import find_artifacts
from edgeship.calibration import evaluation_samples
from edgeship.config import Config
from edgeship.metrics import closeness, output_scores
from edgeship.model.reference import load_reference, run_reference
from edgeship.types import Precision, Target

REFERENCE = "pytorch-fp32"
DEFAULT_SAMPLES = 64
# metric -> (the output_scores key, the table's short label)
METRICS = {"top1": ("top1_agreement", "top1"), "retrieval": ("retrieval_agreement", "NN"), "cosine": ("cosine_mean", "cos")}

Outputs = Sequence[Sequence[np.ndarray]]


def compare(
    cfg: Config,
    targets: tuple[Target, ...] | None = None,
    precisions: tuple[Precision, ...] | None = None,
    samples: int = DEFAULT_SAMPLES,
    on_event: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run up to ``samples`` evaluation (else calibration) samples through every artifact.

    Returns {"model", "samples", "agreement": {"metric", "output", "kind_from"}, "rows": {name:
    {"status", "skip_reason", "cosine_mean", "agreement"}}, "pairwise": {name: {other:
    agreement of ``other`` with ``name`` as the reference}}}; the reference is a row.
    """
    from edgeship.measure.output_kinds import OutputKind, output_kinds
    from edgeship.runtimes.base import RuntimeUnavailable

    say = on_event or (lambda _m: None)
    refs = find_artifacts(cfg, targets, precisions)
    feeds = [s.inputs for s in evaluation_samples(cfg)[: max(1, samples)]]
    say(f"reference {cfg.model.name} on {len(feeds)} samples ...")
    model = load_reference(cfg)
    outputs: dict[str, list[list[np.ndarray]]] = {REFERENCE: [run_reference(model, f, cfg.model.inputs) for f in feeds]}
    kinds = output_kinds(cfg.model.output_kinds, cfg.model.outputs, outputs[REFERENCE])
    pick = (next(((i, "top1") for i, o in enumerate(kinds) if o.kind is OutputKind.CLASSIFICATION), None)
            or next(((i, "retrieval") for i, o in enumerate(kinds) if o.kind is OutputKind.EMBEDDING), None))
    index, metric = pick if pick else (None, "cosine")
    rows: dict[str, dict[str, Any]] = {REFERENCE: {"status": "reference", "skip_reason": None}}
    for ref in refs:
        say(f"run {ref.name} ...")
        try:
            outputs[ref.name] = run_artifact(ref, feeds)
        except RuntimeUnavailable as exc:
            rows[ref.name] = {"status": "skipped", "skip_reason": str(exc)}
            continue
        rows[ref.name] = {"status": "ok", "skip_reason": None}

    def agreement(reference: Outputs, candidate: Outputs) -> float | None:
        if index is None:
            return closeness(reference, candidate)["cosine_mean"]
        return output_scores(reference, candidate, index, kinds[index].kind.value)[METRICS[metric][0]]

    for name, outs in outputs.items():
        rows[name].update(cosine_mean=closeness(outputs[REFERENCE], outs)["cosine_mean"],
                          agreement=agreement(outputs[REFERENCE], outs))
    pairwise = {a: {b: agreement(outputs[a], outputs[b]) for b in outputs} for a in outputs}
    chosen = {"metric": metric, "output": None if index is None else kinds[index].name,
              "kind_from": None if index is None else kinds[index].kind_from}
    return {"model": cfg.model.name, "samples": len(feeds), "agreement": chosen, "rows": rows, "pairwise": pairwise}


def matrix_table(result: dict[str, Any], wide: bool = False) -> Any:
    """Agreement with the reference, then pairwise agreement in %: column k is the k-th artifact
    (numbered, so the matrix fits a terminal; ``wide`` names them ``<metric>=<artifact>``).
    Skipped artifacts are listed under the table with their reason (``skipped_lines``)."""
    from edgeship.ui.table import Column, Table

    chosen = result.get("agreement") or {"metric": "top1", "output": None}
    label = METRICS[chosen["metric"]][1]
    names = list(result["rows"])
    ran = [n for n in names if n in result["pairwise"]]
    number = {n: i + 1 for i, n in enumerate(ran)}
    cols = [Column("n", "#", "number"), Column("artifact", "artifact"),
            Column("cosine_mean", "cos mean", "number", fmt="{:.5f}"),
            Column("agreement", f"{label} agr", "percent", digits=3)]
    cols += [Column(f"{label}={n}", f"{label}={n}" if wide else str(number[n]), "number",
                    fmt=(lambda v: f"{100 * v:.1f}%") if wide else (lambda v: f"{100 * v:.0f}")) for n in ran]
    head = f"{result['model']}: {result['samples']} samples, agreement vs {REFERENCE}"
    if wide:
        what = {"top1": "top-1", "retrieval": "nearest-neighbour", "cosine": "cosine"}[chosen["metric"]]
        on = f" of {chosen['output']}" if chosen.get("output") else ""
        title = f"{head} and pairwise {what}{on}"
    else:    # fits 100 columns
        title = f"{head}, pairwise {label} in % (column k: artifact #k)"
    table = Table(cols, title=title)
    for name in ran:
        r, pair = result["rows"][name], result["pairwise"][name]
        table.add_row(n=number[name], artifact=name, cosine_mean=_f(r["cosine_mean"]),
                      agreement=_f(r["agreement"]), **{f"{label}={o}": _f(pair[o]) for o in ran})
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
    from edgeship.ui.table import PLAIN_WIDTH

    return "\n".join([str(matrix_table(result, wide).render(width, wide=wide)),
                      *skipped_lines(result, None if wide else width or PLAIN_WIDTH)])


def _f(v: float | None) -> float | str:
    return "-" if v is None else v
