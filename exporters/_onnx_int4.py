"""ONNX int4-weight: onnxruntime's MatMulNBits (4-bit blocks of weights, float compute).

onnxruntime's quantizer handles MatMul with a constant weight; torch's exporter writes Linear
layers as Gemm, so a Gemm with a constant weight (alpha = beta = 1, no transA) is first
rewritten as MatMul + Add, which is exactly equivalent. Convolutions keep float weights
(MatMulNBits has no conv form); the recipe lists what stayed float.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from edgeship.errors import ExportError
from edgeship.lazy import require

BLOCK_SIZE = 32


def int4_weight(src: Path, dst: Path, model_name: str, block_size: int = BLOCK_SIZE) -> dict[str, Any]:
    onnx = require("onnx", "onnx")
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    model = onnx.load(str(src))
    rewritten = gemm_to_matmul(model)
    q = MatMulNBitsQuantizer(model, bits=4, block_size=block_size, is_symmetric=True)
    log = logging.getLogger("onnxruntime.quantization.matmul_nbits_quantizer")
    level = log.level
    log.setLevel(logging.WARNING)    # it logs every node it skips at INFO, on stderr
    try:
        q.process()
    finally:
        log.setLevel(level)
    out = q.model.model
    n4 = sum(1 for n in out.graph.node if n.op_type == "MatMulNBits")
    if n4 == 0:
        raise ExportError(
            f"{model_name}: onnx-int4-weight: no MatMul/Gemm with a constant weight to quantize "
            "(MatMulNBits covers fully connected layers only); use int8-dynamic or int8 for this model"
        )
    onnx.save(out, str(dst))
    floats = sorted({n.op_type for n in out.graph.node if n.op_type in ("Conv", "MatMul", "Gemm", "ConvTranspose")})
    return {"quantizer": "onnxruntime MatMulNBitsQuantizer", "bits": 4, "block_size": block_size,
            "symmetric": True, "matmulnbits_nodes": n4, "gemm_rewritten_as_matmul_add": rewritten,
            "float_weight_ops": floats}


def gemm_to_matmul(model: Any) -> int:
    """Rewrite Gemm(A, W, b) with a constant W as MatMul(A, W') + b in place; returns the count."""
    onnx = require("onnx", "onnx")
    from onnx import helper, numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    nodes = []
    count = 0
    for n in model.graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
        if (n.op_type != "Gemm" or n.input[1] not in inits or attrs.get("transA", 0)
                or attrs.get("alpha", 1.0) != 1.0 or attrs.get("beta", 1.0) != 1.0):
            nodes.append(n)
            continue
        w = numpy_helper.to_array(inits[n.input[1]])
        if attrs.get("transB", 0):
            w = w.T.copy()
        wname = f"{n.input[1]}_kn"
        model.graph.initializer.append(numpy_helper.from_array(w, wname))
        has_bias = len(n.input) > 2 and n.input[2]
        mm_out = f"{n.output[0]}_mm" if has_bias else n.output[0]
        nodes.append(helper.make_node("MatMul", [n.input[0], wname], [mm_out], name=f"{n.name}_matmul"))
        if has_bias:
            nodes.append(helper.make_node("Add", [mm_out, n.input[2]], [n.output[0]], name=f"{n.name}_bias"))
        count += 1
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    used = {i for n in model.graph.node for i in n.input}
    keep = [i for i in model.graph.initializer if i.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep)
    onnx.checker.check_model(model)
    return count
