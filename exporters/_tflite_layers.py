"""TFLite INT8 layers: keep-float ids for the PT2E quantizer and the per-layer error report.

A *layer* is an op the PT2E quantizer annotates (linear, conv, add, mul, cat, pooling, ...;
the view ops that only share their input's qparams are not layers). Its id, the handle
``ExportJob.keep_float`` takes back, is the fully qualified name of the innermost PyTorch
module the op was traced in (``features.3.conv``), or the fx node name (``add_1``) for an op
written in the root module's ``forward``. litert-torch's own ``set_module_name`` cannot be
used: its filter parses the ``nn_module_stack`` keys, which torch >= 2.5 no longer spells as
``L__self___<name>``, and it rejects ``None`` (float) configs; ``make_quantizer`` filters the
annotators instead (exporters/_tflite_pt2e.py).

The report is measured on the PT2E graph in torch (``convert_pt2e(fold_quantize=False)``:
every annotated edge becomes quantize -> dequantize), the graph litert-torch lowers to the
.tflite: each layer's dequantized output against the FP32 graph's same node, then, for the
worst layers by SQNR, the final output error after re-quantizing with that layer alone float.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgeship.accuracy.layers import LayerError
from edgeship.calibration import Sample
from edgeship.errors import UsageError
from edgeship.exporters import _layer_sim as sim
from edgeship.exporters._tflite_pt2e import capture, int8_config, layer_id, make_quantizer, module_fqn

TOOL = ("torch PT2E graph (torchao convert_pt2e, fold_quantize=False) vs the FP32 graph, "
        "node by node; gain_if_float by re-quantizing with the layer float")
# layers whose gain_if_float is measured (lowest SQNR first): every layer of a small net, since
# SQNR accumulates through the graph and a second culprit can look no worse than its neighbours
WORST_K = 16


def is_layer(node: Any) -> bool:
    """An op the quantizer annotated with its own qspecs (not a view sharing its input's)."""
    from torchao.quantization.pt2e.quantizer import SharedQuantizationSpec

    ann = node.meta.get("quantization_annotation")
    if node.op != "call_function" or ann is None or not getattr(ann, "_annotated", False):
        return False
    specs = [ann.output_qspec, *ann.input_qspec_map.values()]
    return any(s is not None and not isinstance(s, SharedQuantizationSpec) for s in specs)


def check_keep_float(captured: Any, keep: Sequence[str], model_name: str, config: Any) -> None:
    """Every keep-float id must name a layer the quantizer would quantize; else one line listing some."""
    if not keep:
        return

    quantizer = make_quantizer(config)
    probe = quantizer.annotate(quantizer.transform_for_annotation(copy.deepcopy(captured)))
    known = {layer_id(n) for n in probe.graph.nodes if is_layer(n)}
    unknown = [k for k in keep if k not in known]
    if unknown:
        some = ", ".join(sorted(known)[:12])
        raise UsageError(f"{model_name}: tflite-int8: keep_float names no quantized layer of the model: "
                         f"{', '.join(unknown)} (layers are module names or node names: {some})")


def quantize(job: Any, captured: Any, keep: Sequence[str], calibration: Sequence[Sample]) -> tuple[Any, Any]:
    """PT2E prepare/calibrate/convert a copy of ``captured`` as the TFLite int8 export does.

    Returns (annotated graph before calibration, converted graph with quantize/dequantize ops).
    """
    import torch
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e


    quantizer = make_quantizer(int8_config(job)[0], keep)
    prepared = prepare_pt2e(copy.deepcopy(captured), quantizer)
    with torch.no_grad():
        for s in calibration:
            prepared(*_args(job, s))
    annotated = copy.deepcopy(prepared)
    return annotated, convert_pt2e(prepared, fold_quantize=False)


def float_graph(job: Any, captured: Any) -> Any:
    """``captured`` through the same prepare_pt2e rewrites (conv-bn folding, scalars to
    attributes) with nothing annotated: the FP32 graph whose node names and tensors match the
    quantized one (a conv node's output there is already batch-normalized)."""
    from torchao.quantization.pt2e.quantize_pt2e import prepare_pt2e


    quantizer = make_quantizer(int8_config(job)[0])
    quantizer.annotate = lambda model: model   # no observers: a float graph
    return prepare_pt2e(copy.deepcopy(captured), quantizer)


def layer_report(job: Any, artifact_dir: Path, samples: Sequence[Sample],
                 worst_k: int = 16) -> list[LayerError]:
    """Per-layer SQNR and gain_if_float of the TFLite INT8 artifact in ``artifact_dir``."""
    import torch


    base_keep = sim.int8_artifact(artifact_dir, "tflite", job, samples)
    captured, _ = capture(torch, job, [])
    calibration = job.calibration_samples()
    annotated, converted = quantize(job, captured, base_keep, calibration)
    reference = float_graph(job, captured)

    groups: dict[str, list[Any]] = {}
    for n in annotated.graph.nodes:
        if is_layer(n):
            groups.setdefault(layer_id(n), []).append(n)
    # each layer's tensor: the last op of the group, read after its output quantize/dequantize
    tail = {layer: nodes[-1].name for layer, nodes in groups.items()}
    seen_q = {layer: _dequantized(converted, name) for layer, name in tail.items()}
    ref_nodes: dict[str, list[np.ndarray]] = {layer: [] for layer in groups}
    got_nodes: dict[str, list[np.ndarray]] = {layer: [] for layer in groups}
    ref_out, base_out = [], []
    for s in samples:
        args = _args(job, s)
        ref = sim.record_nodes(reference, args, tail.values())
        got = sim.record_nodes(converted, args, seen_q.values())
        for layer in groups:
            ref_nodes[layer].append(ref[tail[layer]])
            got_nodes[layer].append(got[seen_q[layer]])
        ref_out.append(sim.run_outputs(captured, args))
        base_out.append(sim.run_outputs(converted, args))
    sqnr = {layer: sim.sqnr_db(ref_nodes[layer], got_nodes[layer]) for layer in groups}
    base_error = sim.output_error(ref_out, base_out)

    def kept_error(layer: str) -> float:
        _, conv = quantize(job, captured, (*base_keep, layer), calibration)
        return sim.output_error(ref_out, [sim.run_outputs(conv, _args(job, s)) for s in samples])

    gains = sim.worst_k_gains(list(groups), sqnr, worst_k, kept_error, base_error)
    modules = dict(job.model.named_modules())
    out = []
    for layer, nodes in groups.items():
        fqn = module_fqn(nodes[-1])
        mod = modules.get(fqn) if fqn else None
        out.append(LayerError(
            layer=layer, op_type="+".join(_op_name(n) for n in nodes), module=fqn, sqnr_db=sqnr[layer],
            gain_if_float=gains.get(layer),
            params=sum(p.numel() for p in mod.parameters(recurse=False)) if mod is not None else 0,
            tool=TOOL,
        ))
    return out


def _dequantized(converted: Any, name: str) -> str:
    """The node downstream ops read for ``name``'s output: its quantize -> dequantize, if any."""
    node = next(n for n in converted.graph.nodes if n.name == name)
    for user in node.users:
        if "quantize_per" in str(user.target) and "dequantize" not in str(user.target):
            for dq in user.users:
                if "dequantize_per" in str(dq.target):
                    return str(dq.name)
    return name


def _op_name(node: Any) -> str:
    return str(getattr(node.target, "__name__", node.target)).split(".")[0]


def _args(job: Any, s: Sample) -> tuple[Any, ...]:
    import torch

    return tuple(torch.from_numpy(np.ascontiguousarray(s.inputs[i.name])) for i in job.inputs)
