"""Structural validation of a saved .mlpackage on any OS (CoreML cannot execute on Linux).

Loads the package's spec and MIL program without predicting, checks its inputs/outputs
against the model's specs, counts ops by type, and confirms the requested precision really is
in the weights: fp16 consts in fp16 packages, int8 constexpr weights in int8 packages.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from edgeship.errors import ExportError
from edgeship.fsutil import tree_size
from edgeship.types import Precision

INT8_WEIGHT_OPS = ("constexpr_affine_dequantize", "constexpr_blockwise_shift_scale")


def inspect_package(path: Path) -> dict[str, Any]:
    import coremltools as ct
    from coremltools.converters.mil.frontend.milproto.load import load as load_mil

    model = ct.models.MLModel(str(path), skip_model_load=True)
    spec = model.get_spec()
    prog = load_mil(spec, spec.specificationVersion, model.weights_dir)
    from coremltools.converters.mil.mil.types import builtin_to_string

    ops: Counter[str] = Counter()
    op_dtypes: Counter[str] = Counter()   # "conv:fp16": which precision each op computes in
    const_dtypes: Counter[str] = Counter()
    int8_weights = 0
    for fn in prog.functions.values():
        for op in _walk(fn):
            ops[op.op_type] += 1
            if op.outputs and op.op_type != "const":
                op_dtypes[f"{op.op_type}:{_dtype_name(builtin_to_string, op.outputs[0].dtype)}"] += 1
            if op.op_type == "const" and op.outputs[0].val is not None and getattr(op.outputs[0].val, "size", 1) > 16:
                const_dtypes[str(op.outputs[0].val.dtype)] += 1
            if op.op_type in INT8_WEIGHT_OPS:
                data = getattr(op, "quantized_data", None) or getattr(op, "data", None)
                if data is not None and str(data.val.dtype) in ("int8", "uint8"):
                    int8_weights += 1
    return {
        "inputs": [i.name for i in spec.description.input],
        "io": {f.name: _feature(f) for f in list(spec.description.input) + list(spec.description.output)},
        "outputs": [o.name for o in spec.description.output],
        "ops": dict(sorted(ops.items())),
        "ops_by_dtype": dict(sorted(op_dtypes.items())),
        "weight_dtypes": dict(sorted(const_dtypes.items())),
        "int8_weight_tensors": int8_weights,
        "activation_quantize_ops": ops.get("quantize", 0),
        "size_bytes": tree_size(path),
        "spec_version": spec.specificationVersion,
    }


def _feature(f: Any) -> dict[str, Any]:
    from coremltools.proto.FeatureTypes_pb2 import ArrayFeatureType

    arr = f.type.multiArrayType
    return {"shape": [int(d) for d in arr.shape], "dtype": ArrayFeatureType.ArrayDataType.Name(arr.dataType).lower()}


def _dtype_name(to_string: Any, dtype: Any) -> str:
    """MIL scalar name of a tensor's element type ("fp16", "int8", ...)."""
    elem = dtype.get_primitive() if hasattr(dtype, "get_primitive") else dtype
    try:
        return str(to_string(elem))
    except KeyError:   # exotic types (lists, states) are counted by their class name
        return getattr(elem, "__name__", str(elem))


def _walk(block: Any) -> Any:
    """Every op of a MIL block, nested blocks (cond/while bodies) included."""
    for op in block.operations:
        yield op
        for inner in op.blocks:
            yield from _walk(inner)


def validate(path: Path, job: Any, precision: Precision) -> dict[str, Any]:
    info = inspect_package(path)
    where = f"{job.model_name}: coreml-{precision}"
    want_in = [s.name for s in job.inputs]
    if info["inputs"] != want_in or info["outputs"] != list(job.outputs):
        raise ExportError(f"{where}: package I/O {info['inputs']} -> {info['outputs']} does not match "
                          f"the model specs {want_in} -> {list(job.outputs)}")
    w = info["weight_dtypes"]
    problems = []
    for spec in job.inputs:
        got, want = info["io"][spec.name], "int32" if spec.dtype.startswith("int") else "float32"
        if got["shape"] != list(spec.shape) or got["dtype"] != want:
            problems.append(f"input '{spec.name}' is {got['dtype']}{got['shape']}, expected {want}{list(spec.shape)}")
    for name in job.outputs:
        if info["io"][name]["dtype"] != "float32":
            problems.append(f"output '{name}' is {info['io'][name]['dtype']}, expected float32")
    if precision is Precision.FP16 and (w.get("float16", 0) == 0 or w.get("float32", 0) > 0):
        problems.append(f"expected float16 weights, found {w}")
    if precision is Precision.FP32 and w.get("float16", 0) > 0:
        problems.append(f"expected float32 weights, found {w}")
    if precision in (Precision.INT8, Precision.INT8_WEIGHT) and info["int8_weight_tensors"] == 0:
        problems.append(f"expected int8 weights ({'/'.join(INT8_WEIGHT_OPS)}), found none; weights {w}")
    if precision is Precision.INT8 and info["activation_quantize_ops"] == 0:
        problems.append("expected quantized activations (quantize ops), found none")
    if problems:
        raise ExportError(f"{where}: validation failed: {'; '.join(problems)}")
    return info
