"""The interface of a converted .tflite model: configured names, real output shapes, input casts.

litert-torch names the signature entries ``args_<i>`` / ``output_<i>`` and the graph tensors
``serving_default_args_<i>:0``; ``name_io`` gives both the names of ``[model] inputs`` and
``outputs`` (the numbers give the order), so the signature a user or ``benchmark_model`` sees
is the configured one. The converter also narrows 64-bit inputs to 32 bits (enable_x64=False,
most on-device runtimes lack int64); ``input_casts`` records each narrowing so the runtime
converts the declared dtype exactly that way, refusing values that do not fit.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np

# what litert-torch does to 64-bit I/O (enable_x64=False)
NARROWED = {"int64": "int32", "float64": "float32"}


def input_casts(inputs: Sequence[Any]) -> dict[str, dict[str, str]]:
    """``{input name: {"from", "to", "by"}}`` for every declared input the converter narrows."""
    return {s.name: {"from": s.dtype, "to": NARROWED[s.dtype],
                     "by": "litert-torch (enable_x64=False); values that do not fit are refused"}
            for s in inputs if s.dtype in NARROWED}


def name_io(model: Any, inputs: Sequence[str], outputs: Sequence[str]) -> dict[str, list[int]]:
    """Rename the graph inputs/outputs of ``model`` (a ``ModelT``) and its signature entries to
    ``inputs`` / ``outputs``; returns each output's shape. Edits the model in place."""
    sg = model.subgraphs[0]
    if len(sg.inputs) != len(inputs) or len(sg.outputs) != len(outputs):
        raise ValueError(f"the model has {len(sg.inputs)} input(s) and {len(sg.outputs)} output(s), "
                         f"[model] declares {len(inputs)} and {len(outputs)}")
    for sd in model.signatureDefs or []:
        for entries, names, prefix in ((sd.inputs, inputs, "args_"), (sd.outputs, outputs, "output_")):
            for entry, name in zip(_ordered(entries or [], prefix), names):
                entry.name = name
                sg.tensors[entry.tensorIndex].name = name.encode()
    if not model.signatureDefs:   # no signature: the graph order is the call order
        for idx, name in list(zip(sg.inputs, inputs)) + list(zip(sg.outputs, outputs)):
            sg.tensors[idx].name = name.encode()
    by_index = {int(i): n for n, i in zip(outputs, sg.outputs)}
    for sd in model.signatureDefs or []:
        by_index = {e.tensorIndex: _text(e.name) for e in sd.outputs or []}
    return {by_index[int(i)]: [int(d) for d in sg.tensors[int(i)].shape] for i in sg.outputs if int(i) in by_index}


def _ordered(entries: list[Any], prefix: str) -> list[Any]:
    def key(pos_entry: tuple[int, Any]) -> int:
        m = re.search(prefix + r"(\d+)$", _text(pos_entry[1].name))
        return int(m.group(1)) if m else pos_entry[0]

    return [e for _, e in sorted(enumerate(entries), key=key)]


def _text(name: Any) -> str:
    return name.decode() if isinstance(name, bytes) else str(name or "")


def float_params(model: Any) -> dict[str, Any]:
    """How much of a quantized model's parameters stay float: ``{"float_param_fraction",
    "float_params", "params"}``, counted in elements of the constant tensors ops read
    (weights, tables, biases; not the int32 shape/axis operands)."""
    from ai_edge_litert import schema_py_generated as s

    floats = (s.TensorType.FLOAT32, s.TensorType.FLOAT16)
    with_bias = {s.BuiltinOperator.FULLY_CONNECTED, s.BuiltinOperator.CONV_2D, s.BuiltinOperator.DEPTHWISE_CONV_2D}
    sg = model.subgraphs[0]
    seen: set[int] = set()
    total = flt = 0
    for op in sg.operators:
        code = model.operatorCodes[op.opcodeIndex]
        builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
        for pos, t in enumerate(int(i) for i in op.inputs):
            if t < 0 or t in seen:
                continue
            tensor = sg.tensors[t]
            data = model.buffers[tensor.buffer].data if tensor.buffer else None
            if data is None or len(data) == 0:
                continue
            if tensor.type in (s.TensorType.INT32, s.TensorType.INT64) and not (builtin in with_bias and pos == 2):
                continue
            seen.add(t)
            n = int(np.prod(tensor.shape)) if tensor.shape is not None and len(tensor.shape) else 1
            total += n
            flt += n if tensor.type in floats else 0
    return {"float_param_fraction": round(flt / total, 4) if total else 0.0, "float_params": flt, "params": total}
