"""Per-layer fidelity of what a device computed: its layers' tensors against the FP32 model's.

The device returns the tensors of the shipped artifact (``Runtime.intermediates``: for ONNX a
debug copy built here, for TFLite the interpreter's preserve-all-tensors mode); the FP32
reference is the FP32 artifact of the same export run on this host, whose tensors carry the
same names (the INT8 graph is quantized from it). Each matched layer gets the cosine per
sample and the SQNR over all samples; the first layer, in execution order, whose worst-sample
cosine falls below the threshold is where the device's numbers diverge.

ONNX debug copy: for a QDQ model the tapped tensors are the QuantizeLinear outputs (the int8
values the next layer reads, dequantized here with the node's own scale and zero point), so
onnxruntime still fuses each layer into its integer kernel: a graph output on a float tensor
inside a QDQ group would keep that group in float and measure something that never ships. A
float model taps every node output. The copy's sha256 is recorded next to the artifact's digest.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgeship.artifact.atomic import sha256_file
from edgeship.artifact.selection import ArtifactRef
from edgeship.errors import ArtifactError
from edgeship.exporters._onnx_names import torch_module

DEFAULT_THRESHOLD = 0.99
DEFAULT_SAMPLES = 8
_Q_INPUT = "_QuantizeLinear_Input"


# ---- ONNX: the debug copy ----------------------------------------------------------------

def onnx_debug_copy(model_path: Path, dest: Path, every_tensor: bool = False) -> tuple[str, list[dict[str, Any]]]:
    """Write the debug copy of ``model_path`` to ``dest``; (its sha256, the taps in execution order).

    A tap: ``{"output", "name" (the FP32 tensor it matches), "node", "op_type", "quantization"}``.
    ``every_tensor`` taps every node output (the FP32 reference's own copy).
    """
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(model_path))
    g = model.graph
    inits = {i.name: i for i in g.initializer}
    producer = {o: n for n in g.node for o in n.output}
    outputs = {o.name for o in g.output}
    qdq = any(n.op_type == "QuantizeLinear" and n.input[0] not in inits for n in g.node)
    taps: list[dict[str, Any]] = []
    for n in g.node:
        if qdq and not every_tensor:
            if n.op_type != "QuantizeLinear" or n.input[0] in inits:
                continue
            src = producer.get(n.input[0])
            scale = numpy_helper.to_array(inits[n.input[1]]) if n.input[1] in inits else None
            zero = numpy_helper.to_array(inits[n.input[2]]) if len(n.input) > 2 and n.input[2] in inits else None
            if scale is None or scale.size != 1:
                continue            # a per-channel activation scale: not a layer output edgeship can dequantize
            taps.append({"output": n.output[0], "name": n.input[0].removesuffix(_Q_INPUT),
                         "node": src.name if src is not None else n.name,
                         "op_type": src.op_type if src is not None else n.op_type,
                         "quantization": {"scale": float(scale.reshape(-1)[0]),
                                          "zero_point": int(zero.reshape(-1)[0]) if zero is not None else 0}})
        else:
            if n.op_type in ("Constant", "QuantizeLinear", "DequantizeLinear"):
                continue
            taps += [{"output": o, "name": o, "node": n.name, "op_type": n.op_type, "quantization": None}
                     for o in n.output if o]
    inferred = onnx.shape_inference.infer_shapes(model)
    types = {v.name: v for v in list(inferred.graph.value_info) + list(inferred.graph.output)}
    kept = []
    for t in taps:
        if t["output"] in outputs:
            kept.append(t)
            continue
        info = types.get(t["output"])
        if info is None:        # shape inference cannot type it: ORT needs a typed graph output
            continue
        g.output.append(info)
        outputs.add(t["output"])
        kept.append(t)
    dest.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(dest))
    return sha256_file(dest), kept


def onnx_modules(fp32_model: Path) -> dict[str, str]:
    """Node name -> PyTorch module, from the FP32 export (the QDQ copy keeps the node names)."""
    import onnx

    return {n.name: m for n in onnx.load(str(fp32_model)).graph.node if (m := torch_module(n))}


def onnx_reference(fp32: ArtifactRef, feeds: Sequence[dict[str, np.ndarray]], scratch: Path) -> dict[str, list[np.ndarray]]:
    """Every tensor of the FP32 ONNX artifact on each feed (optimizations off: reference semantics)."""
    import onnxruntime as ort

    onnx_debug_copy(fp32.model_path, scratch / "fp32.debug.onnx", every_tensor=True)
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(str(scratch / "fp32.debug.onnx"), so, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    inputs = [i.name for i in sess.get_inputs()]
    out: dict[str, list[np.ndarray]] = {}
    for f in feeds:
        for k in inputs:        # an input's quantizer is a layer too (its tap matches the input's name)
            out.setdefault(k, []).append(np.asarray(f[k]))
        for n, a in zip(names, sess.run(names, {k: np.asarray(f[k]) for k in inputs})):
            out.setdefault(n, []).append(np.asarray(a))
    return out


# ---- TFLite ------------------------------------------------------------------------------

def tflite_reference(fp32: ArtifactRef, feeds: Sequence[dict[str, np.ndarray]]) -> dict[str, list[np.ndarray]]:
    """Every op output of the FP32 TFLite artifact on each feed (preserve-all-tensors mode)."""
    from edgeship.runtimes.base import get_runtime

    out: dict[str, list[np.ndarray]] = {}
    with get_runtime("litert")(str(fp32.model_path), fp32.manifest.to_dict(), 1) as rt:
        for f in feeds:
            for t in rt.intermediates(f):
                if not t.get("output"):
                    out.setdefault(t["name"], []).append(np.asarray(t["array"]))
    return out


def tflite_module(tensor: str) -> str | None:
    """The module litert-torch names a tensor after, one ``<class>_<name>`` per nesting level:
    ``Root/torch.nn.modules.container.Sequential_features/torch.nn.modules.conv.Conv2d_3`` -> features.3
    (the last location of a fused op's name is its own: ``ReLU_2;;...Conv2d_0`` -> features.0)."""
    parts = [p for p in _locations(tensor) if "/" in p]
    if not parts:
        return None
    names = [m.group(1) for seg in parts[-1].split("/")[1:] if (m := re.search(r"\.[A-Za-z0-9]+_([^.;/]+)$", seg))]
    return ".".join(names) or None


def _normal(name: str) -> str:
    # litert-torch numbers a repeated location ("...;1") differently in the FP32 and INT8 graphs
    return re.sub(r"(;\d*)+$", "", name)


def _locations(name: str) -> list[str]:
    """The source locations a litert-torch tensor name joins with ";;" (a fused op names all of its ops)."""
    return [_normal(p) for p in name.split(";;") if _normal(p)]


def _by_location(name: str, reference: dict[str, list[np.ndarray]]) -> list[np.ndarray] | None:
    """The one reference tensor sharing the most module locations with ``name`` (INT8 names a fused
    conv+relu "relu;;conv", FP32 "conv"); None when none or several tie."""
    mine = {p for p in _locations(name) if "/" in p}
    if not mine:
        return None
    scored = sorted(((len(mine & {p for p in _locations(k) if "/" in p}), k) for k in reference), reverse=True)
    if not scored or scored[0][0] == 0 or (len(scored) > 1 and scored[1][0] == scored[0][0]):
        return None
    return reference[scored[0][1]]


# ---- the comparison ----------------------------------------------------------------------

def compare_layers(index: list[dict[str, Any]], arrays: dict[str, np.ndarray], reference: dict[str, list[np.ndarray]],
                   threshold: float = DEFAULT_THRESHOLD, modules: dict[str, str] | None = None,
                   target: str = "onnx") -> dict[str, Any]:
    """Per layer (device execution order): cosine per sample, SQNR; the first below ``threshold``."""
    by_normal = {_normal(k): v for k, v in reference.items()}
    rows: list[dict[str, Any]] = []
    unmatched = []
    for t in index:
        name = t.get("match") or t["name"]
        ref = reference.get(name) or by_normal.get(_normal(name)) or (_by_location(name, reference) if target == "tflite" else None)
        got = arrays.get(t["key"])
        if ref is None or got is None or list(np.shape(ref[0])) != list(got.shape[1:]) or len(ref) != len(got):
            unmatched.append(name)
            continue
        got = got.astype(np.float64)
        q = t.get("quantization")
        if q:
            got = (got - q["zero_point"]) * q["scale"]
        want = np.stack([np.asarray(r, np.float64) for r in ref])
        cos = [_cosine(w, g) for w, g in zip(want, got)]
        noise = float(np.sum((want - got) ** 2))
        signal = float(np.sum(want ** 2))
        sqnr = 10 * np.log10(signal / noise) if noise > 0 and signal > 0 else None
        module = (modules or {}).get(t.get("node") or "") if target == "onnx" else tflite_module(t["name"])
        rows.append({"layer": t.get("node") or t["name"], "module": module, "op_type": t.get("op_type"),
                     "tensor": name, "cosine_min": min(cos), "cosine_mean": float(np.mean(cos)),
                     "sqnr_db": None if sqnr is None else float(sqnr), "range": [t.get("min"), t.get("max")],
                     "quantized": bool(q)})
    first = next((r for r in rows if r["cosine_min"] < threshold), None)
    for r in rows:
        r["diverged"] = r["cosine_min"] < threshold
    return {"layers": rows, "first_divergent": first, "unmatched": unmatched, "threshold": threshold,
            "metric": "cosine_min: the worst sample's cosine of the layer's output vs the FP32 model's same tensor"}


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel(), b.ravel()
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    if na == 0 and nb == 0:
        return 1.0
    return float(a @ b / (na * nb)) if na and nb else 0.0


def fp32_twin(refs: Sequence[ArtifactRef], ref: ArtifactRef) -> ArtifactRef:
    """The FP32 artifact of the same export as ``ref`` (its reference tensors); else one line."""
    for r in refs:
        if r.target == ref.target and r.precision.value == "fp32" and r.manifest.model == ref.manifest.model:
            return r
    raise ArtifactError(f"{ref.name}: per-layer fidelity compares with the FP32 {ref.target.value} artifact of the same "
                        f"export, and there is none; run 'edgeship export --target {ref.target.value} --precision fp32'")


def side_by_side(host: dict[str, Any], device: dict[str, Any] | None, ops: dict[str, Any] | None) -> list[dict[str, Any]]:
    """One row per layer of the host-side ranking (its order) with what the device measured for
    the same layer: fidelity (``eval --device --layers``) and time (``profile --ops``). A layer
    is matched by its node name (ONNX), else by its PyTorch module (TFLite)."""
    dev_rows = (device or {}).get("layers") or []
    by_layer = {r["layer"]: r for r in dev_rows}
    by_module = {r["module"]: r for r in dev_rows if r.get("module")}
    first = ((device or {}).get("first_divergent") or {}).get("layer")
    times: dict[str, float] = {}
    if ops and not ops.get("times_skipped"):
        for o in ops.get("ops") or []:
            key = re.sub(r"_token_\d+$", "", o["name"])   # ORT's layout pass renames a node it rewrites
            times[key] = times.get(key, 0.0) + float(o["p50_ms"])
    out = []
    for h in host.get("layers") or []:
        d = by_layer.get(h["layer"]) or (by_module.get(h["module"]) if h.get("module") else None) or {}
        out.append({"layer": h["layer"], "module": h.get("module"), "op_type": h.get("op_type"),
                    "host_sqnr_db": h.get("sqnr_db"), "gain_if_float": h.get("gain_if_float"),
                    "device_cosine_min": d.get("cosine_min"), "device_sqnr_db": d.get("sqnr_db"),
                    "first_divergent": bool(d) and d.get("layer") == first,
                    "op_p50_ms": times.get(h["layer"])})
    return out
