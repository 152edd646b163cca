"""What an ONNX INT8 artifact really left in float: op types and the share of parameters.

An op computes in integer when it is an integer op (``*Integer``, ``QLinear*``,
``DynamicQuantizeLSTM``) or, in QDQ format, when every float input it reads comes from a
DequantizeLinear (onnxruntime fuses DQ -> op -> Q into an integer kernel). A GRU whose input is
dequantized but whose weights are plain float initializers computes in float, and holds those
weights in float: it is listed, and its weights count in ``float_param_fraction``.

Parameters are the initializers of more than one element that nodes compute with; Q/DQ scales
and zero points are bookkeeping and count on neither side. The glue onnxruntime's dynamic
quantization adds around an integer MatMul (Cast, the scale Mul, the bias Add) belongs to the
integer op. Gather of a float table (an embedding) is listed: its table stays float.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgeship.lazy import require

# moving data, not computing with it (an embedding Gather of a float table is handled apart)
DATA_OPS = {"Shape", "Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze", "Gather", "Concat", "Constant",
            "Cast", "Identity", "Slice", "Split", "Expand", "ConstantOfShape", "Range", "Size"}
QDQ = {"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear"}
# input positions that are scales / zero points on integer ops
BOOKKEEPING = {"MatMulInteger": {2, 3}, "ConvInteger": {2, 3}, "DynamicQuantizeLSTM": {8, 9, 10, 11},
               "QuantizeLinear": {1, 2}, "DequantizeLinear": {1, 2}}


def _integer(op: str) -> bool:
    return "Integer" in op or op.startswith("QLinear") or op == "DynamicQuantizeLSTM"


def float_report(path: Path) -> dict[str, Any]:
    """``{"float_ops": [op types], "float_param_fraction": share of parameter elements left float}``."""
    onnx = require("onnx", "onnx")
    from onnx import numpy_helper

    m = onnx.load(str(path), load_external_data=False)
    g = m.graph
    inits = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    dq_out = {n.output[0] for n in g.node if n.op_type == "DequantizeLinear"}
    for n in g.node:        # a Transpose/Reshape of a dequantized weight is folded into it by ORT
        if n.op_type in DATA_OPS and n.input and n.input[0] in dq_out:
            dq_out.update(n.output)
    # dynamic quantization glue: Cast(int result) -> Mul(scale) [-> Add(bias)]
    int_result: set[str] = set()
    glue: set[int] = set()
    for idx, n in enumerate(g.node):
        if _integer(n.op_type) or n.op_type == "DynamicQuantizeLinear":
            int_result.update(n.output)
        elif n.op_type in ("Cast", "Mul", "Add") and any(i in int_result for i in n.input):
            glue.add(idx)
            int_result.update(n.output)
    types = _float_types(m)

    def is_float(name: str) -> bool:
        if name in inits:
            return inits[name].dtype.kind == "f"
        return types.get(name, True)

    ops: set[str] = set()
    float_params = quant_params = 0
    for idx, n in enumerate(g.node):
        op = n.op_type
        skip = BOOKKEEPING.get(op, set())
        weights = [(k, i) for k, i in enumerate(n.input) if i in inits and inits[i].size > 1 and k not in skip]
        if op in QDQ:
            quant_params += sum(inits[i].size for k, i in weights if k == 0 and inits[i].dtype.kind in "iu")
            continue
        if _integer(op) or idx in glue:
            quant_params += sum(inits[i].size for _, i in weights)
            continue
        if op in DATA_OPS:
            table = [i for k, i in weights if op == "Gather" and k == 0 and inits[i].dtype.kind == "f"]
            if table:
                ops.add(op)
                float_params += sum(inits[i].size for i in table)
            continue
        float_inputs = [i for i in n.input if i and is_float(i)]
        if float_inputs and all(i in dq_out for i in float_inputs):
            continue          # a QDQ node unit: runs as an integer kernel
        ops.add(op)
        float_params += sum(inits[i].size for _, i in weights if inits[i].dtype.kind == "f")
    total = float_params + quant_params
    return {"float_ops": sorted(ops), "float_param_fraction": round(float_params / total, 4) if total else 0.0}


def _float_types(model: Any) -> dict[str, bool]:
    """value name -> is it a float tensor, where ONNX shape inference knows (contrib ops may not)."""
    onnx = require("onnx", "onnx")
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:       # noqa: BLE001  (inference is a hint; unknown types count as float)
        inferred = model
    floats = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16, onnx.TensorProto.DOUBLE}
    g = inferred.graph
    out: dict[str, bool] = {}
    for vi in list(g.value_info) + list(g.input) + list(g.output):
        et = vi.type.tensor_type.elem_type
        if et:
            out[vi.name] = et in floats
    return out


__all__ = ["float_report"]
