"""Measure a model the way the compress table reports it: params, MACs, bytes, accuracy."""

from __future__ import annotations

from typing import Any

import numpy as np

from edgeship.lazy import require


def stacked(samples: list[Any]) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """Samples (each shaped like the input specs) -> one batch per input, plus labels or None."""
    names = list(samples[0].inputs)
    x = {n: np.concatenate([s.inputs[n] for s in samples]) for n in names}
    if any(s.label is None for s in samples):
        return x, None
    return x, np.concatenate([np.asarray(s.label).reshape(-1) for s in samples])


def measure(model: Any, example: tuple[Any, ...], x: dict[str, np.ndarray], labels: np.ndarray | None,
            names: tuple[str, ...], teacher_pred: np.ndarray | None = None) -> dict[str, Any]:
    """Parameter count, MACs (torch-pruning's counter, None without it), FP32 bytes, accuracy."""
    torch = require("torch", "torch")
    from edgeship.compress.steps.distill import logits

    params = sum(p.numel() for p in model.parameters())
    size = sum(t.numel() * t.element_size() for t in list(model.parameters()) + list(model.buffers()))
    pred = logits(model, x, names, torch).argmax(-1).numpy()
    return {
        "params": int(params),
        "macs": macs(model, example),
        "size_bytes": int(size),
        "accuracy": None if labels is None else float((pred == labels).mean()),
        "top1_agreement": None if teacher_pred is None else float((pred == teacher_pred).mean()),
        "pred": pred,
    }


def macs(model: Any, example: tuple[Any, ...]) -> int | None:
    try:
        import torch_pruning as tp
    except ImportError:
        return None
    try:
        ops, _ = tp.utils.count_ops_and_params(model, example)
    except Exception:  # noqa: BLE001  (the counter traces the model; one it cannot trace has no MAC figure)
        return None
    return int(ops)
