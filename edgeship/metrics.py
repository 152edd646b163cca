"""Fidelity of an artifact's outputs against the FP32 PyTorch reference.

Outputs are compared per sample: each sample's outputs are flattened and concatenated into
one vector, so a multi-output model gets one cosine per sample. Top-1 agreement uses the
first output's last axis (the class axis of a classifier).
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
    ref_top = np.stack([np.asarray(s[0]).reshape(-1, np.asarray(s[0]).shape[-1]).argmax(-1) for s in reference])
    got_top = np.stack([np.asarray(s[0]).reshape(-1, np.asarray(s[0]).shape[-1]).argmax(-1) for s in candidate])
    if not np.isfinite(got).all():
        cos = np.zeros_like(cos)
    return {
        "cosine_min": float(cos.min()),
        "cosine_mean": float(cos.mean()),
        "max_abs_err": float(np.abs(err).max()) if np.isfinite(err).all() else float("inf"),
        "snr_db": snr,
        "top1_agreement": float((ref_top == got_top).mean()),
    }


def accuracy(outputs: Sequence[Sequence[np.ndarray]], labels: Sequence[np.ndarray]) -> float:
    """Top-1 accuracy of the first output against integer labels."""
    pred = np.concatenate([np.asarray(s[0]).reshape(-1, np.asarray(s[0]).shape[-1]).argmax(-1) for s in outputs])
    lab = np.concatenate([np.asarray(l).reshape(-1) for l in labels])
    if pred.shape != lab.shape:
        raise ValueError(f"{pred.size} predictions but {lab.size} labels")
    return float((pred == lab).mean())
