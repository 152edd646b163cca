"""CoreML W8A8 layers: the keep-float selector and the per-layer error report.

CoreML's W8A8 is quantized in PyTorch (coremltools.optimize.torch ``LinearQuantizer``) and
then converted, because coremltools' own ``linear_quantize_activations`` calibrates with
``MLModel.predict`` (macOS only). So the op selector that keeps a layer float is the torch
quantizer's: ``module_name_configs = {"<module FQN>": None}``, and a layer id is the FQN of a
module that holds quantized weights. ``float_mil_ops`` reads the converted ML program back and
lists the compute ops that really stayed float, so the manifest shows the effect, not only
the request.

The report is measured on the W8A8 simulation in torch (the finalized fx module: reference
quantized modules with quantize/dequantize around them), never on Core ML itself: running
the .mlpackage needs macOS. Each layer's output (after its own output quantize/dequantize)
against the FP32 model's same module output; ``gain_if_float`` by re-calibrating with that
module alone float, for the worst layers by SQNR.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgeship.accuracy.layers import LayerError
from edgeship.errors import UsageError

TOOL = ("torch W8A8 simulation (coremltools.optimize.torch LinearQuantizer, finalized) vs the FP32 "
        "model, module by module; Core ML predict needs macOS, so the .mlpackage is not run")
_COMPUTE = ("linear", "conv", "conv_transpose", "matmul")
_OPERANDS = ("x", "y")


def selector(keep_float: Sequence[str]) -> dict[str, Any]:
    """The LinearQuantizerConfig entries that leave ``keep_float`` modules unquantized."""
    return {"module_name_configs": {name: None for name in keep_float}} if keep_float else {}


def check_keep_float(job: Any) -> None:
    """Every keep-float id must name a module with weights; else one line listing some."""
    if not job.keep_float:
        return
    known = sorted(name for name, mod in job.model.named_modules()
                   if name and any(True for _ in mod.parameters(recurse=False)))
    unknown = [k for k in job.keep_float if k not in known]
    if unknown:
        raise UsageError(f"{job.model_name}: coreml-int8: keep_float names no module with weights: "
                         f"{', '.join(unknown)} (e.g. {', '.join(known[:12])})")


def float_mil_ops(model: Any) -> list[str]:
    """Names of the ML program's linear/conv ops whose weight is a float constant, and matmuls
    with no dequantized operand: the compute that stays float (an int8 layer's weight comes
    from a ``constexpr_*`` dequantization; its input may come from either kind of layer)."""
    spec = model.get_spec() if hasattr(model, "get_spec") else model
    out = []
    for fn in spec.mlProgram.functions.values():
        for block in fn.block_specializations.values():
            producer: dict[str, str] = {}
            for op in block.operations:
                if op.type in _COMPUTE:
                    keys = ("weight",) if "weight" in op.inputs else _OPERANDS
                    args = [a.name for k in keys if k in op.inputs for a in op.inputs[k].arguments if a.name]
                    kinds = [producer.get(a, "input") for a in args]
                    if not any(k == "dequantize" or k.startswith("constexpr_") for k in kinds):
                        out.append(op.outputs[0].name)
                for o in op.outputs:
                    producer[o.name] = op.type
    return out


def layer_report(exporter: Any, job: Any, artifact_dir: Path, samples: Sequence[Any],
                 worst_k: int | None = None) -> list[LayerError]:
    """Per-layer SQNR and gain_if_float of the CoreML INT8 (W8A8) artifact in ``artifact_dir``
    (``exporter``: the CoreML exporter, whose calibration the report repeats)."""
    from edgeship.exporters import _layer_sim as sim

    base_keep = sim.int8_artifact(artifact_dir, "coreml", job, samples)
    calibration = job.calibration_samples()
    final = exporter.w8a8_calibrated(job, calibration, base_keep)
    reference = float_twin(final)
    modules = dict(final.named_modules())
    layers = {str(n.target): n for n in final.graph.nodes
              if n.op == "call_module" and _quantized(modules[str(n.target)])}
    # the same node in both graphs: a fused conv-bn-act module's output is post-activation
    tensors = {layer: _dequantized(node) for layer, node in layers.items()}

    ref_t: dict[str, list[np.ndarray]] = {layer: [] for layer in layers}
    got_t: dict[str, list[np.ndarray]] = {layer: [] for layer in layers}
    ref_out, base_out = [], []
    for s in samples:
        args = _args(job, s)
        ref = sim.record_nodes(reference, args, [n.name for n in layers.values()])
        got = sim.record_nodes(final, args, tensors.values())
        for layer, node in layers.items():
            ref_t[layer].append(ref[node.name])
            got_t[layer].append(got[tensors[layer]])
        ref_out.append(sim.run_outputs(job.model, args))
        base_out.append(sim.run_outputs(final, args))
    sqnr = {layer: sim.sqnr_db(ref_t[layer], got_t[layer]) for layer in layers}
    base_error = sim.output_error(ref_out, base_out)

    def kept_error(layer: str) -> float:
        kept = exporter.w8a8_calibrated(job, calibration, (*base_keep, layer))
        return sim.output_error(ref_out, [sim.run_outputs(kept, _args(job, s)) for s in samples])

    k = sim.DEFAULT_WORST_K if worst_k is None else worst_k
    gains = sim.worst_k_gains(list(layers), sqnr, k, kept_error, base_error)
    originals = dict(job.model.named_modules())
    out = []
    for layer in layers:
        original = originals.get(layer)
        out.append(LayerError(
            layer=layer, op_type=type(original if original is not None else modules[layer]).__name__,
            module=layer, sqnr_db=sqnr[layer], gain_if_float=gains.get(layer),
            params=sum(p.numel() for p in original.parameters(recurse=False)) if original is not None else 0,
            tool=TOOL,
        ))
    return out


def float_twin(final: Any) -> Any:
    """A copy of the finalized W8A8 module computing in float: activation quantize/dequantize
    removed, reference modules reading their float (batch-norm folded) weights."""
    import copy

    twin = copy.deepcopy(final)
    for mod in twin.modules():
        if hasattr(mod, "weight_qscheme"):
            mod.get_weight = _float_weight(mod)
    graph = twin.graph
    for node in list(graph.nodes):
        if _is_quantize(node) or _is_dequantize(node):
            node.replace_all_uses_with(node.args[0])
            graph.erase_node(node)
    graph.eliminate_dead_code()
    twin.recompile()
    return twin


def _float_weight(mod: Any) -> Any:
    return lambda: mod.weight


def _quantized(mod: Any) -> bool:
    return any(hasattr(m, "weight_qscheme") for m in mod.modules())


def _is_quantize(node: Any) -> bool:
    return node.op == "call_function" and "quantize_per" in str(node.target) and "dequantize" not in str(node.target)


def _is_dequantize(node: Any) -> bool:
    return (node.op == "call_method" and node.target == "dequantize") or (
        node.op == "call_function" and "dequantize" in str(node.target))


def _dequantized(node: Any) -> str:
    """The node downstream ops read for ``node``'s output: its quantize -> dequantize, if any."""
    for user in node.users:
        if _is_quantize(user):
            for dq in user.users:
                if _is_dequantize(dq):
                    return str(dq.name)
    return str(node.name)


def _args(job: Any, s: Any) -> tuple[Any, ...]:
    import torch

    return tuple(torch.from_numpy(np.ascontiguousarray(s.inputs[i.name])) for i in job.inputs)
