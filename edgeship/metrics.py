"""Fidelity of an artifact's outputs against the FP32 PyTorch reference.

Outputs are compared per sample: each sample's outputs are flattened and concatenated into
one vector, so a multi-output model gets one cosine per sample. Top-1 agreement uses the
first output's last axis (the class axis of a classifier).

``output_scores`` scores each output by its kind (edgeship/measure/output_kinds.py): every kind gets
cosine, max abs error and SNR; a classification output top-1 agreement; an embedding output
retrieval agreement and rank correlation across the evaluation set (``retrieval``). A metric
that does not apply to a kind is None, never 0.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

EPS = 1e-12


def _per_sample(outputs: Sequence[Sequence[np.ndarray]]) -> np.ndarray:
    return np.stack([np.concatenate([np.asarray(o, np.float64).ravel() for o in sample]) for sample in outputs])


def fidelity(reference: Sequence[Sequence[np.ndarray]], candidate: Sequence[Sequence[np.ndarray]]) -> dict[str, float | None]:
    """Compare per-sample outputs: ``reference[i]`` and ``candidate[i]`` are the outputs of sample i."""
    if len(reference) != len(candidate) or not reference:
        raise ValueError(f"need the same non-zero number of samples, got {len(reference)} and {len(candidate)}")
    ref = _per_sample(reference)
    got = _per_sample(candidate)
    if ref.shape != got.shape:
        raise ValueError(f"output shapes differ: reference {ref.shape}, candidate {got.shape}")
    dot = (ref * got).sum(1)
    norms = np.linalg.norm(ref, axis=1) * np.linalg.norm(got, axis=1)
    cos = np.where(norms > EPS, dot / np.maximum(norms, EPS), np.where(np.abs(ref - got).max(1) <= EPS, 1.0, 0.0))
    err = got - ref
    noise = float((err**2).sum())
    signal = float((ref**2).sum())
    # identical outputs have no noise: SNR is reported as None rather than infinity (not JSON)
    snr = None if noise == 0.0 else float(10.0 * np.log10(max(signal, EPS) / noise))
    if not np.isfinite(got).all():
        cos = np.zeros_like(cos)
    return {
        "cosine_min": float(cos.min()),
        "cosine_mean": float(cos.mean()),
        "max_abs_err": float(np.abs(err).max()) if np.isfinite(err).all() else float("inf"),
        "snr_db": snr,
        "top1_agreement": _top1(reference, candidate),
    }


def _top1(reference: Sequence[Sequence[np.ndarray]], candidate: Sequence[Sequence[np.ndarray]], index: int = 0) -> float:
    """Agreement of the argmax over the last axis of output ``index`` (each position of it)."""
    ref_top = np.stack([np.asarray(s[index]).reshape(-1, np.asarray(s[index]).shape[-1]).argmax(-1) for s in reference])
    got_top = np.stack([np.asarray(s[index]).reshape(-1, np.asarray(s[index]).shape[-1]).argmax(-1) for s in candidate])
    return float((ref_top == got_top).mean())


def accuracy(outputs: Sequence[Sequence[np.ndarray]], labels: Sequence[np.ndarray], index: int = 0) -> float:
    """Top-1 accuracy of output ``index`` (the first by default) against integer labels."""
    pred = np.concatenate([np.asarray(s[index]).reshape(-1, np.asarray(s[index]).shape[-1]).argmax(-1) for s in outputs])
    lab = np.concatenate([np.asarray(l).reshape(-1) for l in labels])
    if pred.shape != lab.shape:
        raise ValueError(f"{pred.size} predictions but {lab.size} labels")
    return float((pred == lab).mean())


# an artifact's nearest neighbour counts as the reference's when the reference finds it as near
# as its own pick: duplicate samples in an evaluation set tie, and either twin is a right answer
TIE = 1e-6
BLOCK = 512     # rows of the similarity matrix at a time: N x N floats never held at once


def _unit_rows(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), EPS)


def _ranks(x: np.ndarray) -> np.ndarray:
    return x.argsort(1).argsort(1).astype(np.float64)


def retrieval(reference: np.ndarray, candidate: np.ndarray) -> tuple[float | None, float | None]:
    """(nearest-neighbour agreement, mean Spearman rank correlation) of two (N, D) embedding sets.

    For each sample i, its nearest neighbour among the other N-1 samples by cosine, found with
    the reference embeddings and with the candidate's: the agreement is the fraction of samples
    whose two neighbours are the same (or tie in the reference). The rank correlation compares,
    per sample, the order of its cosine similarities to all other samples (1.0: the artifact
    ranks every other sample as the reference does), averaged over the samples. None when the
    set is too small (agreement needs 2 samples, rank correlation 3).
    """
    n = len(reference)
    if n < 2:
        return None, None
    if not np.isfinite(candidate).all():
        return 0.0, (0.0 if n >= 3 else None)   # a broken artifact retrieves nothing
    ref, got = _unit_rows(reference.astype(np.float64)), _unit_rows(candidate.astype(np.float64))
    agree, rho = 0, 0.0
    for start in range(0, n, BLOCK):
        rows = np.arange(start, min(start + BLOCK, n))
        rs, gs = ref[rows] @ ref.T, got[rows] @ got.T
        rs[np.arange(len(rows)), rows] = -np.inf     # a sample is not its own neighbour
        gs[np.arange(len(rows)), rows] = -np.inf
        pick = gs.argmax(1)
        agree += int((rs[np.arange(len(rows)), pick] >= rs.max(1) - TIE).sum())
        if n >= 3:
            keep = ~np.eye(len(rows), n, start, dtype=bool)
            ra = _ranks(rs[keep].reshape(len(rows), n - 1))
            ga = _ranks(gs[keep].reshape(len(rows), n - 1))
            ra -= ra.mean(1, keepdims=True)
            ga -= ga.mean(1, keepdims=True)
            rho += float(((ra * ga).sum(1) / np.maximum(np.sqrt((ra**2).sum(1) * (ga**2).sum(1)), EPS)).sum())
    return agree / n, (rho / n if n >= 3 else None)


def output_scores(reference: Sequence[Sequence[np.ndarray]], candidate: Sequence[Sequence[np.ndarray]],
                  index: int, kind: str) -> dict[str, float | None]:
    """The metrics of output ``index`` for its kind ("classification", "embedding", "regression")."""
    ref = [[s[index]] for s in reference]
    got = [[s[index]] for s in candidate]
    f = fidelity(ref, got) if kind == "classification" else closeness(ref, got)
    out: dict[str, float | None] = {**f, "retrieval_agreement": None, "rank_correlation": None}
    if kind == "embedding":
        agree, rho = retrieval(_per_sample(ref), _per_sample(got))
        out.update(retrieval_agreement=agree, rank_correlation=rho)
    return out


def closeness(ref: Sequence[Sequence[np.ndarray]], got: Sequence[Sequence[np.ndarray]]) -> dict[str, float | None]:
    """``fidelity`` without top-1 agreement (None): for outputs of any kind and shape, scalars included."""
    # top-1 is computed on a stand-in, then dropped
    flat = fidelity([[np.asarray(o).reshape(1, -1) for o in s] for s in ref],
                    [[np.asarray(o).reshape(1, -1) for o in s] for s in got])
    return {**flat, "top1_agreement": None}
