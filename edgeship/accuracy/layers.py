"""The per-layer contract between the accuracy-aware search and the backends.

A backend that supports accuracy-aware INT8 does two things (exporters/base.py):

- ``Exporter.layer_report(job, precision, artifact_dir, samples)`` returns one ``LayerError``
  per quantized layer of the artifact in ``artifact_dir`` (built by that exporter at that
  precision), measured on ``samples`` against the FP32 model's same tensor;
- ``Exporter._export`` honours ``job.keep_float``: the ``LayerError.layer`` ids listed there stay
  in float in the new build, and the recipe records them under ``"kept_float"``.

The ``layer`` id is the backend's own handle for "keep this op float" (an ONNX node name for
``nodes_to_exclude``, a PT2E node/module name for the TFLite quantizer's per-module config, a
CoreML op name for the W8A8 op selector), so the search never interprets it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class LayerError:
    layer: str                 # backend handle, passed back through ExportJob.keep_float
    op_type: str               # e.g. "Conv", "MatMul", "FULLY_CONNECTED", "linear"
    module: str | None         # the PyTorch module it came from (FQN), where the exporter can tell
    sqnr_db: float             # SQNR (dB) of this layer's output vs the FP32 model's same tensor
    # how much the final output improves if this layer alone stays float (the ranking metric):
    # reduction of the output error (1 - cosine) relative to the all-INT8 build; None if not measured
    gain_if_float: float | None = None
    params: int = 0            # weight elements the layer holds (for float-fraction accounting)
    tool: str = ""             # what measured it, e.g. "onnxruntime.quantization.qdq_loss_debug"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def worst_first(errors: list[LayerError]) -> list[LayerError]:
    """Ranking order: biggest measured gain first; layers without a gain by lowest SQNR."""
    return sorted(errors, key=lambda e: (-(e.gain_if_float if e.gain_if_float is not None else float("-inf")), e.sqnr_db))
