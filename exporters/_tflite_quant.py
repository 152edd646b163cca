"""Full-integer TFLite models: their int8 I/O edges, float32 edges around them, float leftovers.

litert-torch lowers a PT2E-quantized graph with int8 graph inputs/outputs. For io = "float"
we put a QUANTIZE op before each int8 input and a DEQUANTIZE op after each int8 output (the
same edges TF's converter emits with float inference types), editing the flatbuffer with the
schema shipped in ai-edge-litert. The float tensors take over the original names and
signature entries, so the model's interface keeps its names. ``integer_graph`` lists the ops
that still compute in float, so a graph that is not fully integer is visible in the manifest.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

_QUANTIZE, _DEQUANTIZE = 114, 6


def io_params(path: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """dtype, scale and zero point of the graph inputs and outputs, in signature order.

    litert-torch names them <sig>_args_<i> and <sig>_output_<i>; the number gives the order.
    """
    import re

    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path))

    def ordered(details: list[dict[str, Any]], prefix: str) -> list[dict[str, Any]]:
        def key(d: dict[str, Any]) -> int:
            m = re.search(prefix + r"(\d+)", d["name"])
            return int(m.group(1)) if m else d["index"]

        out = []
        for d in sorted(details, key=key):
            scale, zero = d["quantization"]
            out.append({"dtype": d["dtype"].__name__, "scale": float(scale), "zero_point": int(zero)})
        return out

    return ordered(it.get_input_details(), "args_"), ordered(it.get_output_details(), "output_")


def float_edges(model: Any) -> int:
    """Wrap every int8/uint8 graph input/output of ``model`` (a ``ModelT``) in QUANTIZE/DEQUANTIZE.

    Edits the model in place; returns how many edges were wrapped.
    """
    from ai_edge_litert import schema_py_generated as s

    sg = model.subgraphs[0]
    quant_types = (s.TensorType.INT8, s.TensorType.UINT8)
    wrapped = 0
    new_in, pre = [], []
    for t in sg.inputs:
        if sg.tensors[t].type in quant_types:
            f = _float_twin(model, sg, t)
            pre.append(_op(model, _QUANTIZE, 1, f, t))
            _retarget(model, t, f, "inputs")
            new_in.append(f)
            wrapped += 1
        else:
            new_in.append(t)
    new_out, post = [], []
    for t in sg.outputs:
        if sg.tensors[t].type in quant_types:
            f = _float_twin(model, sg, t)
            post.append(_op(model, _DEQUANTIZE, 2, t, f))
            _retarget(model, t, f, "outputs")
            new_out.append(f)
            wrapped += 1
        else:
            new_out.append(t)
    sg.inputs, sg.outputs = new_in, new_out
    sg.operators = pre + list(sg.operators) + post
    return wrapped


def integer_graph(model: Any) -> dict[str, Any]:
    """Which ops of a full-integer model still compute in float.

    A PT2E pattern the quantizer did not annotate is lowered as DEQUANTIZE -> float op ->
    QUANTIZE. Returns ``{"float_ops": {op: count}, "requantize_ops": n}``: the float compute
    ops and the QUANTIZE/DEQUANTIZE ops inside the graph (the I/O edges do not count).
    """
    from ai_edge_litert import schema_py_generated as s

    names = {v: k for k, v in vars(s.BuiltinOperator).items() if not k.startswith("_")}
    floats = (s.TensorType.FLOAT32, s.TensorType.FLOAT16)
    sg = model.subgraphs[0]
    float_ops: dict[str, int] = {}
    requantize = 0
    for op in sg.operators:
        code = model.operatorCodes[op.opcodeIndex]
        builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
        outs = [int(i) for i in op.outputs]
        ins = [int(i) for i in op.inputs if i >= 0]
        if builtin in (_QUANTIZE, _DEQUANTIZE):
            at_edge = any(i in sg.inputs for i in ins) or any(o in sg.outputs for o in outs)
            requantize += 0 if at_edge else 1
        elif any(sg.tensors[o].type in floats for o in outs):
            name = names.get(builtin, str(builtin))
            float_ops[name] = float_ops.get(name, 0) + 1
    return {"float_ops": dict(sorted(float_ops.items())), "requantize_ops": requantize}


def _float_twin(model: Any, sg: Any, index: int) -> int:
    """A float32 tensor shaped like tensor ``index`` that takes over its name."""
    from ai_edge_litert import schema_py_generated as s

    q = sg.tensors[index]
    f = s.TensorT()
    f.shape, f.shapeSignature, f.type = q.shape, q.shapeSignature, s.TensorType.FLOAT32
    f.name = q.name
    q.name = (q.name or b"") + b"_int8"
    model.buffers.append(s.BufferT())
    f.buffer = len(model.buffers) - 1
    sg.tensors.append(f)
    return len(sg.tensors) - 1


def _op(model: Any, builtin: int, version: int, src: int, dst: int) -> Any:
    from ai_edge_litert import schema_py_generated as s

    idx = next((i for i, c in enumerate(model.operatorCodes)
                if max(c.builtinCode, c.deprecatedBuiltinCode) == builtin and c.version >= version), None)
    if idx is None:
        code = s.OperatorCodeT()
        code.builtinCode, code.deprecatedBuiltinCode, code.version = builtin, min(builtin, 127), version
        model.operatorCodes.append(code)
        idx = len(model.operatorCodes) - 1
    op = s.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = idx, [src], [dst]
    return op


def _retarget(model: Any, old: int, new: int, role: str) -> None:
    for sd in model.signatureDefs or []:
        if sd.subgraphIndex not in (0, None):
            continue
        for entry in getattr(sd, role) or []:
            if entry.tensorIndex == old:
                entry.tensorIndex = new
