"""Structural validation of a saved .mlpackage on any OS (CoreML cannot execute on Linux).

Loads the package's spec and MIL program without predicting, checks its inputs/outputs
against the model's specs, counts ops by type, and confirms the requested precision really is
in the weights: fp16 consts in fp16 packages, int8 constexpr weights in int8 packages.

A "weight" is a const of more than 16 elements that a computing op reads. Not weights: the
scales/zero points read by ``constexpr_*`` dequantize ops, and the initial carried state of a
``while_loop`` (a GRU's hidden-state buffer), which the fp16 pass cannot cast (coremltools
keeps ``while_loop`` operands fp32) and which holds no parameters.

Precision rules, each the truth of what the recipe produces:

- fp16: every weight is fp16, except those of ops coremltools computes in fp32 at this
  deployment target (``FP32_BELOW_IOS17``: MIL ``lstm`` takes fp16 only from iOS17/macOS14,
  spec version 8); those are listed in ``float_weight_ops`` and the exporter notes them.
- int8-weight: every weight with more than ``weight_threshold`` elements (coremltools'
  ``linear_quantize_weights`` default, 2048) is int8; smaller ones stay float, as documented.
  A model with no weight above the threshold is valid and has no int8 weight at all: the
  report says so (``int8_weight_tensors`` 0, ``largest_weight``) instead of failing.
- int8 (W8A8): int8 weights and quantize ops on activations.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from edgeship.artifact.atomic import tree_size
from edgeship.errors import ExportError
from edgeship.types import Precision

INT8_WEIGHT_OPS = ("constexpr_affine_dequantize", "constexpr_blockwise_shift_scale")
WEIGHT_THRESHOLD = 2048          # coremltools.optimize.coreml.OpLinearQuantizerConfig's default
FP32_BELOW_IOS17 = ("lstm",)     # MIL ops without fp16 weights before spec version 8 (iOS17)
IOS17_SPEC = 8


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
    float_weight_ops: Counter[str] = Counter()    # "lstm:float32" -> weight elements it reads
    weight_elements: Counter[str] = Counter()     # "int8" / "float16" / "float32" -> elements
    largest_float = 0
    int8_weights = 0
    for fn in prog.functions.values():
        for op, outer in _walk(fn):
            ops[op.op_type] += 1
            if op.outputs and op.op_type != "const":
                op_dtypes[f"{op.op_type}:{_dtype_name(builtin_to_string, op.outputs[0].dtype)}"] += 1
            val = op.outputs[0].val if op.op_type == "const" else None
            if val is not None and getattr(val, "size", 1) > 16:
                readers = {c.op_type for c in op.outputs[0].child_ops}
                dtype = str(val.dtype)
                if readers <= {"while_loop"} or (dtype.startswith("float") and readers <= set(INT8_WEIGHT_OPS)):
                    continue   # a loop's initial state or dequantization scales, see the docstring
                const_dtypes[dtype] += 1
                if dtype.startswith("float"):
                    weight_elements[dtype] += int(val.size)
                    largest_float = max(largest_float, int(val.size))
                    for reader in readers - {"cast"}:   # "while_loop/linear": a GRU's gate in its loop
                        float_weight_ops[f"{outer}{reader}:{dtype}"] += int(val.size)
            if op.op_type in INT8_WEIGHT_OPS:
                data = getattr(op, "quantized_data", None) or getattr(op, "data", None)
                if data is not None and str(data.val.dtype) in ("int8", "uint8"):
                    int8_weights += 1
                    weight_elements["int8"] += int(data.val.size)
    total = sum(weight_elements.values())
    return {
        "inputs": [i.name for i in spec.description.input],
        "io": {f.name: _feature(f) for f in list(spec.description.input) + list(spec.description.output)},
        "outputs": [o.name for o in spec.description.output],
        "ops": dict(sorted(ops.items())),
        "ops_by_dtype": dict(sorted(op_dtypes.items())),
        "weight_dtypes": dict(sorted(const_dtypes.items())),
        "int8_weight_tensors": int8_weights,
        "weight_elements": dict(sorted(weight_elements.items())),
        "int8_weight_fraction": round(weight_elements["int8"] / total, 4) if total else 0.0,
        "float_weight_ops": dict(sorted(float_weight_ops.items())),
        "largest_float_weight": largest_float,
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


def _walk(block: Any, outer: str = "") -> Any:
    """(op, "while_loop/" or "") for every op of a MIL block, nested blocks (cond/while bodies)
    included: the prefix names the op whose body holds it."""
    for op in block.operations:
        yield op, outer
        for inner in op.blocks:
            yield from _walk(inner, f"{outer}{op.op_type}/")


def validate(path: Path, job: Any, precision: Precision, weight_threshold: int = WEIGHT_THRESHOLD,
             output_shapes: dict[str, list[int]] | None = None) -> dict[str, Any]:
    """Inspect the package and raise ExportError listing every way it is not what was asked.

    ``output_shapes``: the PyTorch reference's output shapes, which the package must declare.
    """
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
        got = info["io"][name]
        if got["dtype"] != "float32":
            problems.append(f"output '{name}' is {got['dtype']}, expected float32")
        if output_shapes is not None and got["shape"] != list(output_shapes[name]):
            problems.append(f"output '{name}' has shape {got['shape']}, the PyTorch model gives {list(output_shapes[name])}")
    fp32_ok = FP32_BELOW_IOS17 if info["spec_version"] < IOS17_SPEC else ()
    fp32_ops = sorted({k.split(":")[0] for k in info["float_weight_ops"] if k.endswith(":float32")} - set(fp32_ok))
    if precision is Precision.FP16 and (w.get("float16", 0) == 0 or fp32_ops):
        problems.append(f"expected float16 weights, found {w}" + (f" (float32 in {', '.join(fp32_ops)})" if fp32_ops else ""))
    if precision is Precision.FP32 and w.get("float16", 0) > 0:
        problems.append(f"expected float32 weights, found {w}")
    if precision is Precision.INT8_WEIGHT and info["largest_float_weight"] > weight_threshold:
        problems.append(f"expected int8 weights ({'/'.join(INT8_WEIGHT_OPS)}) for every weight over {weight_threshold} "
                        f"elements, found a float one of {info['largest_float_weight']}; weights {w}")
    if precision is Precision.INT8 and info["int8_weight_tensors"] == 0:
        problems.append(f"expected int8 weights ({'/'.join(INT8_WEIGHT_OPS)}), found none; weights {w}")
    if precision is Precision.INT8 and info["activation_quantize_ops"] == 0:
        problems.append("expected quantized activations (quantize ops), found none")
    if problems:
        raise ExportError(f"{where}: validation failed: {'; '.join(problems)}")
    return info
