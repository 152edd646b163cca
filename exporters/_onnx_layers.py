"""Per-layer error of an ONNX INT8 (QDQ) artifact, and running ONNX builds on their CPU class.

SQNR per node comes from onnxruntime's own debugging tool (``qdq_loss_debug``): both the FP32
graph the quantizer started from and the QDQ artifact are augmented to output every float
tensor, run on the samples, matched by tensor name, and compared (``xmodel_err``: the FP32
tensor vs the QDQ tensor after dequantization). ORT runs these augmented graphs with
optimizations off, i.e. the QDQ reference semantics, which do not depend on the CPU.

``gain_if_float`` depends on the integer kernels, so it is measured on the CPU class the
artifact is built for (``built_for.cpu_class``): natively when this host is of that class,
under qemu for x86-avx2 (exporters/_onnx_recipes.py), else not at all (``None``, said in
``tool``). Only the ``GAIN_TOP_K`` nodes with the lowest SQNR are re-quantized with the node
excluded (one ``quantize_static`` each), which bounds the time on big graphs.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgeship.accuracy.layers import LayerError
from edgeship.calibration import Sample
from edgeship.exporters._onnx_names import torch_module
from edgeship.exporting.cpuclass import OrtRecipe

# a net of up to this many quantized layers has every layer's gain measured: SQNR accumulates
# through the graph, so a second culprit behind the first can look no worse than its neighbours
GAIN_TOP_K = 16
TOOL = "onnxruntime.quantization.qdq_loss_debug"
_QDQ = ("QuantizeLinear", "DequantizeLinear")
_Q_INPUT = "_QuantizeLinear_Input"
_INTEGER_OPS = ("MatMulInteger", "ConvInteger", "DynamicQuantizeMatMul", "QAttention")


class NotMeasurable(RuntimeError):
    """No CPU of the artifact's class is at hand (this host is another class, no emulator)."""


def outputs_on_class(cpu_class: str, paths: dict[str, Path],
                     feeds: Sequence[dict[str, np.ndarray]]) -> tuple[dict[str, list[list[np.ndarray]]], str]:
    """Outputs of each ONNX model in ``paths`` computed by a CPU of ``cpu_class``; (outputs, how)."""
    from edgeship.exporters._onnx_recipes import QEMU, QEMU_CPU, how_measurable, run_emulated, run_native

    mode = how_measurable(cpu_class)
    if mode == "native":
        runs = run_native(paths, feeds, None)
        how = f"native: this host is {cpu_class}"
    elif mode == "emulated":
        try:
            runs = run_emulated(paths, feeds)
        except RuntimeError as exc:
            raise NotMeasurable(str(exc)) from None
        how = f"emulated: onnxruntime under {QEMU} -cpu {QEMU_CPU}"
    else:
        raise NotMeasurable(f"this host is not {cpu_class} and cannot emulate it")
    return {k: [list(o) for o in v["outputs"]] for k, v in runs.items()}, how


def quantized_nodes(model: Any, op_types: Sequence[str] | None = None) -> list[Any]:
    """Nodes computing on dequantized inputs (QDQ format): the layers INT8 changes.

    Only ops the recipe quantizes (``op_types``, None: any) that compute: a Reshape, Transpose or
    bias Add that merely reads a dequantized tensor has nothing to give back if kept float, so
    the search never ranks or re-exports it.
    """
    from edgeship.exporters._onnx_float_ops import DATA_OPS

    dq_out = {n.output[0] for n in model.graph.node if n.op_type == "DequantizeLinear"}
    return [n for n in model.graph.node if n.op_type not in _QDQ and n.op_type not in DATA_OPS
            and (op_types is None or n.op_type in op_types) and any(i in dq_out for i in n.input)]


def _recipe(manifest_recipe: dict[str, Any]) -> OrtRecipe:
    r = manifest_recipe
    return OrtRecipe(str(r.get("recipe", "")), r.get("activation_type", "uint8"), r["weight_type"], bool(r["reduce_range"]),
                     "the artifact's recipe")


def _activations(path: Path, out: Path, feeds: Sequence[dict[str, np.ndarray]]) -> dict[str, list[np.ndarray]]:
    from onnxruntime.quantization.qdq_loss_debug import collect_activations, modify_model_output_intermediate_tensors

    modify_model_output_intermediate_tensors(str(path), str(out))
    return collect_activations(str(out), iter([dict(f) for f in feeds]))   # type: ignore[arg-type]


def _outputs(path: Path, out: Path, feeds: Sequence[dict[str, np.ndarray]], names: Sequence[str]) -> dict[str, list[np.ndarray]]:
    """The tensors ``names`` (those ``path`` computes) on each feed, graph optimizations off."""
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(path))
    produced = {o for n in model.graph.node for o in n.output}
    have = {o.name for o in model.graph.output}
    add = [x for x in dict.fromkeys(names) if x in produced and x not in have]
    model.graph.output.extend(onnx.ValueInfoProto(name=x) for x in add)
    onnx.save(model, str(out))
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(str(out), so, providers=["CPUExecutionProvider"])
    keys = [x for x in dict.fromkeys(names) if x in produced]
    acts: dict[str, list[np.ndarray]] = {x: [] for x in keys}
    for f in feeds:
        for x, v in zip(keys, sess.run(keys, dict(f))):
            acts[x].append(v)
    return acts


def _err(ref: Sequence[Sequence[np.ndarray]], got: Sequence[Sequence[np.ndarray]]) -> float:
    from edgeship.metrics import fidelity

    return max(0.0, 1.0 - float(fidelity(ref, got)["cosine_mean"]))


def layer_report(exporter: Any, job: Any, artifact_dir: Path, samples: Sequence[Sample],
                 dynamic: bool = False) -> list[LayerError]:
    """One LayerError per quantized node of the INT8 artifact in ``artifact_dir``.

    Static (QDQ): the layers are the nodes fed by DequantizeLinear, compared through
    qdq_loss_debug's activation matching. Dynamic: quantize_dynamic rewrites each MatMul/Gemm
    into ``<node>_..._quant`` integer ops but keeps the output tensor's name, so each quantized
    node's output is compared with the FP32 graph's same tensor (qdq_loss_debug's SQNR).
    """
    import onnx
    from onnxruntime.quantization.qdq_loss_debug import (
        compute_activation_error,
        compute_signal_to_quantization_noice_ratio,
        create_activation_matching,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from edgeship.artifact.manifest import read_manifest
    from edgeship.exporters._onnx_int8_scope import scope as int8_scope
    from edgeship.exporters._onnx_names import name_nodes

    manifest = read_manifest(artifact_dir)
    q_path = artifact_dir / manifest.model_file
    kept = tuple(manifest.recipe.get("kept_float") or ())
    cpu_class = (manifest.built_for or {}).get("cpu_class") or manifest.recipe.get("cpu_class") or "unknown"
    feeds = [dict(s.inputs) for s in samples]
    with tempfile.TemporaryDirectory(prefix="edgeship-layers-") as tmp:
        scratch = Path(tmp)
        fp32, pre = scratch / "fp32.onnx", scratch / "pre.onnx"
        exporter._export_fp32(job, fp32)
        # the graph both quantizers start from (ORT pre-processing): same node and tensor names as the artifact
        quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
        name_nodes(pre)     # the ids the artifact's build gave its unnamed nodes (never "")
        src_path = pre
        sc = int8_scope(fp32, dynamic, job.quantization.per_channel, job.target_config.int8_scope)
        float_model = onnx.load(str(src_path))
        # a node ORT's pre-processing fused ("node_MatMul_6/MatMulAddFusion") lost torch's scope
        # metadata; the FP32 node it came from still has it
        fp32_by_name = {n.name: n for n in onnx.load(str(fp32)).graph.node}
        if dynamic:
            # only the quantized ops' outputs: exposing every intermediate tensor of a dynamic
            # graph as an output is what made onnxruntime refuse it ("Attempt to replace the
            # existing tensor") on a 6-layer encoder
            wanted = [n.output[0] for n in float_model.graph.node if n.op_type in ("MatMul", "Gemm")]
            float_acts = _outputs(src_path, scratch / "float-aug.onnx", feeds, wanted)
            q_acts = _outputs(q_path, scratch / "q-aug.onnx", feeds, wanted)
            errors: dict[str, Any] = {}
        else:
            float_acts = _activations(src_path, scratch / "float-aug.onnx", feeds)
            q_acts = _activations(q_path, scratch / "q-aug.onnx", feeds)
            errors = compute_activation_error(create_activation_matching(q_acts, float_acts))
        inits = {i.name: int(np.prod(i.dims)) for i in float_model.graph.initializer}
        q_model = onnx.load(str(q_path))
        by_name = {n.name: n for n in float_model.graph.node}
        if dynamic:
            # quantize_dynamic first splits a Gemm into "<node>_MatMul" + "<node>_Add", then names
            # the integer op "<that>_quant"; nodes_to_exclude must name the MatMul it sees
            nodes = []
            for q in q_model.graph.node:
                if q.op_type in _INTEGER_OPS and q.name.endswith("_quant"):
                    layer = q.name.removesuffix("_quant")
                    src = by_name.get(layer) or by_name.get(layer.removesuffix("_MatMul"))
                    if src is not None:
                        nodes.append((layer, src.op_type, src.output[0], src))
        else:
            nodes = [(n.name, n.op_type, n.output[0], by_name.get(n.name))
                     for n in quantized_nodes(q_model, sc["op_types"])]
        rows: list[dict[str, Any]] = []
        for layer, op_type, out, src in nodes:
            if layer in kept:
                continue
            out = out.removesuffix(_Q_INPUT)
            sqnr = (errors.get(out) or {}).get("xmodel_err")
            if sqnr is None and out in float_acts and out in q_acts:
                sqnr = compute_signal_to_quantization_noice_ratio(float_acts[out], q_acts[out])
            rows.append({"layer": layer, "op_type": op_type,
                         "module": torch_module(src if src is not None and torch_module(src) else fp32_by_name.get(layer.split("/")[0])),
                         "sqnr_db": float(sqnr) if sqnr is not None else float("nan"),
                         "params": sum(inits.get(i, 0) for i in (src.input if src is not None else ()))})
        gains, how = _gains(exporter, job, manifest, src_path, q_path, rows, kept, cpu_class, feeds, scratch, dynamic, sc)
    tool = f"{TOOL}; gain_if_float {how}"
    return [LayerError(r["layer"], r["op_type"], r["module"], r["sqnr_db"], gains.get(r["layer"]), r["params"], tool)
            for r in rows]


def _gains(exporter: Any, job: Any, manifest: Any, src: Path, q_path: Path, rows: list[dict[str, Any]],
           kept: tuple[str, ...], cpu_class: str, feeds: list[dict[str, np.ndarray]],
           scratch: Path, dynamic: bool, sc: dict[str, Any]) -> tuple[dict[str, float], str]:
    """Relative reduction of the output error (1 - cosine) when one node more stays float."""
    import dataclasses

    from edgeship.model.reference import reference_outputs

    worst = sorted(rows, key=lambda r: (np.nan_to_num(r["sqnr_db"], nan=np.inf)))[:GAIN_TOP_K]
    if not worst:
        return {}, "not measured: no quantized layers"
    recipe = _recipe(manifest.recipe)
    paths = {"base": q_path}
    for i, r in enumerate(worst):
        paths[r["layer"]] = scratch / f"excl-{i}.onnx"
        if dynamic:
            exporter._int8_dynamic(src, paths[r["layer"]], recipe, sc, kept + (r["layer"],))
        else:
            j = dataclasses.replace(job, keep_float=kept + (r["layer"],))
            exporter._int8_static(j, src, paths[r["layer"]], job.calibration_samples(), recipe, sc)
    refused: list[str] = []
    try:
        outs, how = outputs_on_class(cpu_class, paths, feeds)
    except NotMeasurable as exc:
        return {}, f"not measured on {cpu_class}: {exc}"
    except Exception:       # noqa: BLE001  (onnxruntime refused one build: find which, measure the rest)
        # a graph with one node excluded can be one onnxruntime's optimizer will not load ("Attempt
        # to replace the existing tensor"): that layer gets no gain, the report goes on
        outs, how = {}, ""
        for name, path in paths.items():
            try:
                one, how = outputs_on_class(cpu_class, {name: path}, feeds)
            except NotMeasurable as exc:
                return {}, f"not measured on {cpu_class}: {exc}"
            except Exception:   # this build only
                if name == "base":
                    raise
                refused.append(name)
                continue
            outs.update(one)
    ref = reference_outputs(job, feeds)
    base = _err(ref, outs.pop("base"))
    gains = {name: (0.0 if base == 0 else (base - _err(ref, got)) / base) for name, got in outs.items()}
    note = (f"; not measured for {len(refused)} layer(s) whose build onnxruntime refuses to load ({', '.join(refused)})"
            if refused else "")
    return gains, f"measured on {cpu_class} ({how}) for the {len(worst)} lowest-SQNR layers{note}"
