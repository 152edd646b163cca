"""Shared arithmetic of the torch-side per-layer reports (TFLite PT2E, CoreML W8A8).

Both backends quantize in PyTorch before converting, so their per-layer error is measured on
the simulated INT8 graph in torch: every recorded tensor of the quantized graph is compared
with the FP32 model's same tensor on the same samples (errors accumulate through the graph,
as in onnxruntime's ``qdq_loss_debug``). ``gain_if_float`` re-quantizes with one layer left in
float and measures how much the final output error shrinks.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import numpy as np

# SQNR of a bit-exact tensor is infinite; JSON has no infinity, so it is reported capped
MAX_SQNR_DB = 120.0
# layers whose gain_if_float is measured (the worst by SQNR): bounds the re-quantizations
DEFAULT_WORST_K = 8


@contextlib.contextmanager
def eval_mode(model: Any) -> Iterator[Any]:
    """``model`` in eval mode inside the block; every module's own train/eval flag restored after.

    Post-training calibration observes the model as it will run: in train mode BatchNorm would
    normalize by each calibration batch's statistics (and overwrite its running ones), and
    dropout would drop. A model handed over in train mode is left in train mode.
    """
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, training in flags:
            m.training = training


def sqnr_db(reference: Sequence[np.ndarray], quantized: Sequence[np.ndarray]) -> float:
    """10 log10(signal / noise) over all samples, capped at MAX_SQNR_DB."""
    signal = sum(float((np.asarray(r, np.float64) ** 2).sum()) for r in reference)
    noise = sum(float(((np.asarray(q, np.float64) - np.asarray(r, np.float64)) ** 2).sum())
                for r, q in zip(reference, quantized))
    if noise <= 0.0:
        return MAX_SQNR_DB
    return float(min(MAX_SQNR_DB, 10.0 * np.log10(max(signal, 1e-30) / noise)))


def output_error(reference: Sequence[Sequence[np.ndarray]], candidate: Sequence[Sequence[np.ndarray]]) -> float:
    """1 - mean cosine of the final outputs (edgeship.metrics.fidelity), the error the gain reduces."""
    from edgeship.metrics import fidelity

    return max(0.0, 1.0 - float(fidelity(reference, candidate)["cosine_mean"] or 0.0))


def gain(base_error: float, kept_error: float) -> float:
    """Reduction of the output error relative to the all-INT8 build (1.0: the error is gone)."""
    if base_error <= 0.0:
        return 0.0
    return float((base_error - kept_error) / base_error)


def record_nodes(gm: Any, args: tuple[Any, ...], wanted: Iterable[str]) -> dict[str, np.ndarray]:
    """Run the fx GraphModule ``gm`` on ``args``; return the outputs of the nodes named in ``wanted``."""
    import torch

    names = set(wanted)
    seen: dict[str, np.ndarray] = {}

    class Recorder(torch.fx.Interpreter):  # type: ignore[misc]
        def run_node(self, n: Any) -> Any:
            out = super().run_node(n)
            if n.name in names and isinstance(out, torch.Tensor):
                seen[n.name] = out.detach().float().cpu().numpy().copy()
            return out

    with torch.no_grad():
        Recorder(gm).run(*args)
    return seen


def run_outputs(module: Any, args: tuple[Any, ...]) -> list[np.ndarray]:
    import torch

    with torch.no_grad():
        out = module(*args)
    outs = out if isinstance(out, (tuple, list)) else (out,)
    return [o.detach().float().cpu().numpy() for o in outs]


def worst_k_gains(candidates: Sequence[str], sqnr: dict[str, float], k: int,
                  kept_error: Callable[[str], float], base_error: float) -> dict[str, float]:
    """``gain_if_float`` of the ``k`` layers with the lowest SQNR (one re-quantization each)."""
    worst = sorted(candidates, key=lambda layer: sqnr[layer])[:k]
    return {layer: gain(base_error, kept_error(layer)) for layer in worst}


def int8_artifact(artifact_dir: Any, target: str, job: Any, samples: Sequence[Any]) -> tuple[str, ...]:
    """Check that ``artifact_dir`` holds a ``target``-int8 artifact and that there are samples;
    return the layers its build already keeps float (the report measures the others)."""
    from edgeship.artifact.manifest import read_manifest
    from edgeship.errors import UsageError

    manifest = read_manifest(artifact_dir)
    if manifest.target != target or manifest.precision != "int8":
        raise UsageError(f"{artifact_dir}: a per-layer report needs a {target} int8 artifact, "
                         f"not {manifest.target}-{manifest.precision}")
    if not samples:
        raise UsageError(f"{job.model_name}: {target}-int8: the per-layer report needs at least one sample")
    return tuple(manifest.recipe.get("kept_float") or ())
