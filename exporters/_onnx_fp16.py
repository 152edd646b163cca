"""ONNX fp16: the float16 range check on the fp32 graph, and the conversion.

The range check runs every float intermediate of the fp32 graph on the validation inputs and
refuses the export when one leaves float16's range (+-65504): ORT's CPU EP silently computes
many fp16 ops in float32, so an overflow would not show in its outputs here but would on a
phone's GPU/NPU. Two kinds of tensor are not activations and are not judged:

- constants, and tensors computed from constants only (folded shapes, fill values);
- masking fills: a constant beyond float16's range (``-inf``, ``finfo(float32).min`` =
  -3.4e38) and the tensors it flows into through Where/Add/Mul/... up to the op that consumes
  the mask (Softmax, ...). In those tensors the elements at least half the fill's magnitude
  are the fill itself (masked positions, which the converter clips to float16's min and the
  softmax maps to 0); the other elements are activations and are judged.

A flagged tensor is reported with its sign, the op that produces it and the ops that consume
it. ``[targets.onnx] fp16_keep_float`` lists node names the converter keeps in float32
(onnxruntime's ``node_block_list``); a tensor that only those nodes produce and consume is
not judged.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgeship.errors import ExportError
from edgeship.lazy import require

FP16_MAX = 65504.0
# a constant this large (or inf) is a masking fill (finfo(float32).min, -1e38, -inf), not a weight
FILL_MIN = 1e30
# ops a masking fill passes through unchanged in meaning (the fill stays a fill)
MASK_PASS = {"Where", "Add", "Sub", "Mul", "Neg", "Min", "Max", "Cast", "CastLike", "Expand", "Reshape", "Unsqueeze",
             "Squeeze", "Transpose", "Slice", "Concat", "Tile", "Gather", "Flatten", "Identity"}


def range_check(model_name: str, fp32: Path, feeds: Sequence[dict[str, np.ndarray]],
                keep_float: Sequence[str] = ()) -> dict[str, Any]:
    """Peak |activation| of the fp32 graph on ``feeds``; ExportError naming the tensor if > FP16_MAX."""
    onnx = require("onnx", "onnx")
    import onnxruntime as ort
    from onnx import numpy_helper

    model = onnx.shape_inference.infer_shapes(onnx.load(str(fp32)))
    g = model.graph
    _check_keep_float(model_name, g, keep_float)
    producer = {o: n for n in g.node for o in n.output}
    consumers: dict[str, list[Any]] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    const: set[str] = {i.name for i in g.initializer}
    fills: dict[str, float] = {}          # masking-fill constant -> its magnitude
    for init in g.initializer:
        _note_fill(init.name, numpy_helper.to_array(init), fills)
    tainted: set[str] = set(fills)
    for n in g.node:       # ONNX graphs are topologically sorted
        if n.op_type == "Constant":
            const.update(n.output)
            for a in n.attribute:
                if a.type == onnx.AttributeProto.TENSOR:
                    _note_fill(n.output[0], numpy_helper.to_array(a.t), fills)
            if n.output[0] in fills:
                tainted.add(n.output[0])
            continue
        ins = [i for i in n.input if i]
        if ins and all(i in const for i in ins):
            const.update(n.output)
        if n.op_type in MASK_PASS and any(i in tainted for i in ins):
            tainted.update(n.output)
    floor = 0.5 * min(fills.values()) if fills else np.inf
    kept = set(keep_float)
    graph_outputs = {o.name for o in g.output}

    def judged(name: str) -> bool:
        if name in const:
            return False
        p = producer.get(name)
        # produced and consumed by kept-float nodes only: it never exists in float16
        return not (p is not None and p.name in kept and all(c.name in kept for c in consumers.get(name, [])))

    floats = [vi for vi in g.value_info
              if vi.type.tensor_type.elem_type == onnx.TensorProto.FLOAT and vi.name not in graph_outputs]
    g.output.extend(floats)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    peak: dict[str, float] = {}            # signed value of the largest magnitude seen
    masked = 0
    for feed in feeds:
        for name, arr in zip(names, sess.run(names, feed)):
            a = np.asarray(arr)
            if not np.issubdtype(a.dtype, np.floating) or not a.size or not judged(name):
                continue
            if name in tainted:
                fill = ~np.isfinite(a) | (np.abs(a) >= floor)
                masked += int(fill.any())
                a = a[~fill]
                if not a.size:
                    continue
            v = float(a.ravel()[np.nanargmax(np.abs(a))]) if np.isfinite(a).all() else _first_bad(a)
            if name not in peak or abs(v) > abs(peak[name]) or not np.isfinite(v):
                peak[name] = v
    worst = max(peak, key=lambda k: abs(peak[k]) if np.isfinite(peak[k]) else np.inf) if peak else None
    if worst is not None and not abs(peak[worst]) <= FP16_MAX:
        raise ExportError(f"{model_name}: onnx-fp16: {_describe(worst, peak[worst], producer, consumers)}")
    return {"max_abs_activation": abs(peak[worst]) if worst else 0.0, "tensor": worst, "limit": FP16_MAX,
            "masking_fills_ignored": sorted(fills), "tensors_with_mask_fill": len(tainted - set(fills)),
            **({"keep_float": list(keep_float)} if keep_float else {})}


def convert(src: Path, dst: Path, keep_float: Sequence[str] = ()) -> dict[str, Any]:
    onnx = require("onnx", "onnx")
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(src)), keep_io_types=True,
                                     node_block_list=list(keep_float) or None)
    if keep_float:
        _drop_round_trips(model, set(keep_float))
    onnx.save(model, str(dst))
    return {"converter": "onnxruntime.transformers.float16", "keep_io_types": True,
            "weights": "float16", "io": "float32",
            **({"kept_float32": list(keep_float)} if keep_float else {}),
            "compute": "float16 where the execution provider has fp16 kernels; ORT's CPU EP casts "
                       "ops without them back to float32"}


def _drop_round_trips(model: Any, kept: set[str]) -> None:
    """Bypass Cast(fp16) -> Cast(fp32) pairs: the converter puts one between two kept-float nodes,
    which would put the very tensor kept in float32 through float16 (and overflow it)."""
    onnx = require("onnx", "onnx")
    g = model.graph
    to = {n.output[0]: n for n in g.node if n.op_type == "Cast"}
    fp16, fp32 = onnx.TensorProto.FLOAT16, onnx.TensorProto.FLOAT

    def cast_to(n: Any) -> int:
        return next((a.i for a in n.attribute if a.name == "to"), -1)

    for n in g.node:
        if n.op_type != "Cast" or cast_to(n) != fp32:
            continue
        up = to.get(n.input[0])
        if up is None or cast_to(up) != fp16:
            continue
        src = up.input[0]
        src_node = next((m for m in g.node if src in m.output), None)
        # only a kept-float (float32) producer makes the pair a pure round trip
        if src_node is None or src_node.name not in kept:
            continue
        n.op_type = "Identity"
        del n.attribute[:]
        n.input[0] = src


def _note_fill(name: str, arr: np.ndarray, fills: dict[str, float]) -> None:
    if arr.dtype.kind == "f" and arr.size:
        mag = np.abs(arr.astype(np.float64))
        top = float(np.max(mag))
        if top >= FILL_MIN:
            fills[name] = top


def _first_bad(a: np.ndarray) -> float:
    bad = a[~np.isfinite(a)]
    return float(bad.ravel()[0])


def _describe(tensor: str, value: float, producer: dict[str, Any], consumers: dict[str, list[Any]]) -> str:
    p = producer.get(tensor)
    made = f"output of {p.op_type} '{p.name}'" if p is not None else "a graph input"
    uses = consumers.get(tensor, [])
    fed = ", ".join(f"{c.op_type} '{c.name}'" for c in uses[:3]) + (f" and {len(uses) - 3} more" if len(uses) > 3 else "")
    keep = [n.name for n in ([p] if p is not None else []) + uses[:3] if n.name]
    hint = ", ".join(f'"{k}"' for k in keep)
    return (f"tensor '{tensor}' ({made}{', feeding ' + fed if fed else ''}) reaches {value:.4g}, beyond float16's "
            f"+-{FP16_MAX:g} (inf/NaN in fp16); keep those ops in float32 with [targets.onnx] "
            f"fp16_keep_float = [{hint}], or rescale the model")


def _check_keep_float(model_name: str, g: Any, keep_float: Sequence[str]) -> None:
    names = {n.name for n in g.node}
    unknown = [k for k in keep_float if k not in names]
    if unknown:
        import difflib

        near = difflib.get_close_matches(unknown[0], sorted(names), n=1)
        hint = f"; did you mean '{near[0]}'?" if near else " (node names are in the error that flagged the tensor)"
        # per artifact (the node names exist only once the graph is exported), so not a ConfigError
        raise ExportError(f"key 'targets.onnx.fp16_keep_float': no node named '{unknown[0]}' in the exported "
                          f"graph of {model_name}{hint}")
