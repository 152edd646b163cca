"""Which ops an ONNX INT8 recipe quantizes, chosen from the shape of the graph.

- transformer-like (a Softmax over an activation x activation MatMul: attention): onnxruntime's
  guidance for transformers: INT8 on the MatMul/Gemm ops with constant weights only, weights
  per channel. Attention score MatMuls, Softmax, LayerNormalization, Add and GELU stay float:
  their inputs (mask fills of -3.4e38, softmax tails, residual sums) do not fit one 8-bit scale,
  and quantizing them is what drops a BERT encoder's cosine to ~0.3.
- otherwise every op onnxruntime quantizes (static QDQ), or the matmul-like ops plus LSTM
  (dynamic: onnxruntime has DynamicQuantizeLSTM; it has no integer GRU, which stays float).

The chosen scope and why are recorded in the manifest recipe (``scope``, ``scope_why``).

onnxruntime's ``MatMulConstBOnly`` is honoured by its QOperator/dynamic MatMul only, not by the
QDQ MatMul quantize_static emits, so the transformer scope names the attention MatMuls (both
inputs computed at run time) in ``nodes_to_exclude`` itself (``attention_matmuls``), on the
pre-processed graph the quantizer sees; the recipe lists them under ``float_by_scope``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgeship.lazy import require

# Dynamic quantization: ORT's CPU ConvInteger takes only u8 weights, so like Optimum we
# quantize the matmul-like ops, which is where dynamic quantization pays off; and LSTM.
DYNAMIC_OPS = ["MatMul", "Gemm", "Attention", "LSTM"]
TRANSFORMER_OPS = ["MatMul", "Gemm"]


def is_transformer(fp32: Path) -> str | None:
    """Why the graph looks like a transformer (attention), or None."""
    onnx = require("onnx", "onnx")
    g = onnx.load(str(fp32), load_external_data=False).graph
    consts = {i.name for i in g.initializer} | {o for n in g.node if n.op_type == "Constant" for o in n.output}
    ops = {n.op_type for n in g.node}
    if "Attention" in ops or "MultiHeadAttention" in ops:
        return "the graph has a fused Attention op"
    act_matmuls = [n for n in g.node if n.op_type == "MatMul" and not (set(n.input) & consts)]
    if act_matmuls and "Softmax" in ops:
        return f"Softmax and {len(act_matmuls)} activation x activation MatMul(s) (attention)"
    return None


def scope(fp32: Path, dynamic: bool, per_channel: bool, setting: str = "auto") -> dict[str, Any]:
    """The quantizer arguments for this graph: op_types, per_channel, extra_options, and the record.

    ``setting`` is ``[targets.onnx] int8_scope``: auto (detect), transformer, or all (the
    default scope even for a transformer).
    """
    if setting == "auto":
        why = is_transformer(fp32)
    else:
        why = "set in [targets.onnx] int8_scope" if setting == "transformer" else None
    if why is not None:
        return {"op_types": TRANSFORMER_OPS, "per_channel": True, "extra_options": {"MatMulConstBOnly": True},
                "transformer": True,
                "record": {"scope": "transformer: MatMul/Gemm with constant weights, per-channel weights",
                           "scope_why": f"{why}: ORT's transformer recipe; Softmax, LayerNormalization, Add, "
                                        "GELU and attention score MatMuls stay float"}}
    because = 'int8_scope = "all" in [targets.onnx]' if setting == "all" else "no attention in the graph"
    if dynamic:
        # per-tensor weights, as before this module: what the CPU-class candidates were measured with
        return {"op_types": DYNAMIC_OPS, "per_channel": False, "extra_options": {},
                "record": {"scope": "matmul-like ops and LSTM", "scope_why": f"{because}: "
                           "ORT's dynamic quantization of MatMul/Gemm/LSTM (it has no integer GRU)"}}
    return {"op_types": None, "per_channel": per_channel, "extra_options": {},
            "record": {"scope": "every op onnxruntime quantizes (QDQ)", "scope_why": because}}


def attention_matmuls(path: Path) -> list[str]:
    """Names of the MatMul nodes of the ONNX graph at ``path`` whose inputs are both computed at
    run time (attention scores and their product with V): neither traces back to constants only."""
    onnx = require("onnx", "onnx")
    g = onnx.load(str(path), load_external_data=False).graph
    const = {i.name for i in g.initializer}
    for n in g.node:     # topological order: a node of constants only is a constant
        if all(not i or i in const for i in n.input):
            const.update(n.output)
    return [n.name for n in g.node if n.op_type == "MatMul" and len(n.input) == 2
            and n.input[0] not in const and n.input[1] not in const]
