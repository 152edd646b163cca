"""ONNX: fp32 via the torch.export-based exporter, fp16, int8 static QDQ, int8 dynamic.

int8 static uses onnxruntime's quantize_static in QDQ format, calibrated on the project's
samples; int8 dynamic quantize_dynamic on the matmul-like ops. Both are built for a CPU class
(``ExportJob.cpu_target``, default this host): integer kernels differ by class (x86 without
VNNI saturates u8s8), so each class has candidate recipes (edgeship.exporting.cpuclass) which are
measured on a CPU of that class where one is at hand (exporters/_onnx_recipes.py), fidelity
first and speed second. Every candidate's numbers and the choice land in ``built_for``.
``[quantization] activation_type`` set to int8/uint8 pins the recipe instead.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgeship.accuracy.layers import LayerError
from edgeship.calibration import Sample
from edgeship.errors import ExportError, UsageError
from edgeship.exporters._onnx_float_ops import float_report
from edgeship.exporters._onnx_int8_scope import attention_matmuls
from edgeship.exporters._onnx_int8_scope import scope as int8_scope
from edgeship.exporters._onnx_names import name_nodes
from edgeship.exporters.base import EXPORTERS, Exporter, ExportJob, ExportResult, check_outputs
from edgeship.exporting.cpuclass import OrtRecipe, host_target, onnx_candidates
from edgeship.lazy import require
from edgeship.model.reference import run_reference
from edgeship.types import CalibrationMethod, Precision, QuantType, Target

MODEL_FILE = "model.onnx"
VALIDATION_SAMPLES = 8


@EXPORTERS.register("onnx")
class OnnxExporter(Exporter):
    target = Target.ONNX
    runtime = "onnxruntime"
    precisions = (Precision.FP32, Precision.FP16, Precision.INT8, Precision.INT8_DYNAMIC, Precision.INT4_WEIGHT)
    class_specific = (Precision.INT8, Precision.INT8_DYNAMIC)
    version_modules = ("torch", "onnx", "onnxscript", "onnxruntime")

    def _export(self, job: ExportJob, precision: Precision, workdir: Path) -> ExportResult:
        require("onnx", "onnx", "ONNX export")
        require("onnxruntime", "onnx", "ONNX export")
        out = workdir / MODEL_FILE
        scratch = workdir / ".scratch"
        scratch.mkdir()
        fp32 = scratch / "fp32.onnx" if precision is not Precision.FP32 else out
        recipe: dict[str, Any] = {"exporter": "torch.onnx.export(dynamo=True)", "opset": job.target_config.opset}
        self._export_fp32(job, fp32)
        calibration = None
        built_for = None
        if precision is Precision.FP16:
            from edgeship.exporters import _onnx_fp16

            keep = job.target_config.fp16_keep_float
            recipe["fp16_range_check"] = _onnx_fp16.range_check(job.model_name, fp32, validation_feeds(job), keep)
            recipe.update(_onnx_fp16.convert(fp32, out, keep))
        elif precision is Precision.INT8:
            samples = job.calibration_samples()
            pre = scratch / "pre.onnx"
            from onnxruntime.quantization.shape_inference import quant_pre_process

            quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
            name_nodes(pre)
            sc = int8_scope(fp32, False, job.quantization.per_channel, job.target_config.int8_scope)
            built_for = self._for_class(job, False, scratch, fp32, out,
                                        lambda r, dst: self._int8_static(job, pre, dst, samples, r, sc))
            recipe.update(built_for.pop("_recipe"))
            q = job.quantization
            calibration = {"method": q.method.value, "samples": len(samples), "source": job.calibration_ref}
        elif precision is Precision.INT8_DYNAMIC:
            from onnxruntime.quantization.shape_inference import quant_pre_process

            # ORT's pre-processing folds constants: an LSTM's weights must be initializers to quantize
            pre = scratch / "pre.onnx"
            quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
            name_nodes(pre)
            sc = int8_scope(fp32, True, job.quantization.per_channel, job.target_config.int8_scope)
            built_for = self._for_class(job, True, scratch, fp32, out,
                                        lambda r, dst: self._int8_dynamic(pre, dst, r, sc, job.keep_float))
            recipe.update(built_for.pop("_recipe"))
        elif precision is Precision.INT4_WEIGHT:
            from edgeship.exporters._onnx_int4 import int4_weight

            recipe.update(int4_weight(fp32, out, job.model_name))
        _rm_tree(scratch)
        recipe["fidelity_check"] = self._validate(job, precision, out)
        return ExportResult(model_file=MODEL_FILE, recipe=recipe, calibration=calibration,
                            output_shapes=self._output_shapes(out), built_for=built_for)

    # -- INT8 recipe per CPU class -----------------------------------------------------------
    def _for_class(self, job: ExportJob, dynamic: bool, scratch: Path, fp32: Path, out: Path,
                   build: Callable[[OrtRecipe, Path], dict[str, Any]]) -> dict[str, Any]:
        """Build each candidate recipe for the job's CPU class, keep the chosen one at ``out``.

        Returns the manifest's built_for block plus ``_recipe`` (the chosen recipe's details).
        """
        from edgeship.exporters._onnx_recipes import measure_and_choose

        target = job.cpu_target or host_target()
        pinned = job.quantization.activation_type is not QuantType.AUTO and not dynamic
        if pinned:
            act = job.quantization.activation_type.value
            weight = "int8" if job.quantization.weight_type is QuantType.AUTO else job.quantization.weight_type.value
            name = {"uint8": "u8", "int8": "s8"}[act] + {"uint8": "u8", "int8": "s8"}[weight]
            candidates = [OrtRecipe(name, act, weight, False, "set in [quantization] activation_type/weight_type")]
        else:
            candidates = onnx_candidates(target.cpu_class, dynamic)
        paths: dict[str, Path] = {}
        details: dict[str, dict[str, Any]] = {}
        for c in candidates:
            paths[c.name] = scratch / f"cand-{len(paths)}.onnx"
            details[c.name] = build(c, paths[c.name])
        if pinned:
            chosen, why, records = candidates[0], candidates[0].why, [{"recipe": candidates[0].name, "measured": "not measured: pinned"}]
        else:
            feeds = validation_feeds(job)
            ref = [run_reference(job.model, f, job.inputs) for f in feeds]
            chosen, why, records = measure_and_choose(target.cpu_class, candidates, paths, feeds, ref, fp32)
        shutil.copyfile(paths[chosen.name], out)
        block = target.built_for(chosen.name, why, records)
        block["_recipe"] = {**details[chosen.name], "recipe": chosen.name, "cpu_class": target.cpu_class}
        return block

    # -- conversions -------------------------------------------------------------------------
    def _export_fp32(self, job: ExportJob, path: Path) -> None:
        torch = require("torch", "torch")
        from edgeship.exporters._onnx_names import name_io

        # one torch export per model state for all precisions of a run (it is most of the time)
        try:
            key: str | None = _fp32_key(job)
        except Exception:       # noqa: BLE001  (an exotic module state: export without the cache)
            key = None
        if key is not None and _FP32_CACHE.get("key") == key:
            path.write_bytes(_FP32_CACHE["bytes"])
            return
        try:
            with torch.no_grad():
                # exported with torch's own (unique) names, then renamed: see _onnx_names
                program = torch.onnx.export(job.model, job.example_args(), dynamo=True,
                                            opset_version=job.target_config.opset, verbose=False)
            name_io(program.model, [s.name for s in job.inputs], list(job.outputs))
            program.save(str(path), external_data=False)
        except Exception as exc:
            raise ExportError(f"{job.model_name}: onnx export failed: {type(exc).__name__}: {_first_line(exc)}") from exc
        _FP32_CACHE.clear()
        _FP32_CACHE.update(key=key, bytes=path.read_bytes())

    def _int8_static(self, job: ExportJob, pre: Path, dst: Path, samples: Sequence[Sample], r: OrtRecipe,
                     sc: dict[str, Any]) -> dict[str, Any]:
        from onnxruntime.quantization import (
            CalibrationDataReader,
            QuantFormat,
            quantize_static,
        )
        from onnxruntime.quantization import (
            CalibrationMethod as OrtMethod,
        )
        from onnxruntime.quantization import (
            QuantType as OrtType,
        )

        q = job.quantization
        ort_type = {"uint8": OrtType.QUInt8, "int8": OrtType.QInt8}
        method = {
            CalibrationMethod.MINMAX: OrtMethod.MinMax,
            CalibrationMethod.PERCENTILE: OrtMethod.Percentile,
            CalibrationMethod.ENTROPY: OrtMethod.Entropy,
        }[q.method]
        extra: dict[str, Any] = {"CalibMovingAverage": False, **sc["extra_options"]}
        if q.method is CalibrationMethod.PERCENTILE:
            extra["CalibPercentile"] = q.percentile
        by_scope = attention_matmuls(pre) if sc.get("transformer") else []
        int16 = _int16_overrides(pre, job.int16_layers)
        if int16:
            # A16W8: the activations these layers read are 16-bit (weights stay int8); opset < 21
            # has 16-bit Q/DQ in the com.microsoft domain only
            extra.update(TensorQuantOverrides={t: [{"quant_type": OrtType.QUInt16}] for t in int16},
                         UseQDQContribOps=True)

        class Reader(CalibrationDataReader):  # type: ignore[misc]
            def __init__(self) -> None:
                self._it: Iterator[Sample] = iter(samples)

            def get_next(self) -> dict[str, np.ndarray] | None:
                s = next(self._it, None)
                return None if s is None else dict(s.inputs)

        quantize_static(
            str(pre), str(dst), Reader(), quant_format=QuantFormat.QDQ, per_channel=sc["per_channel"],
            op_types_to_quantize=sc["op_types"],
            reduce_range=r.reduce_range, activation_type=ort_type[r.activation_type],
            weight_type=ort_type[r.weight_type], calibrate_method=method, extra_options=extra,
            nodes_to_exclude=list(job.keep_float) + [n for n in by_scope if n not in job.keep_float],
        )
        lstm = _dynamic_lstm(dst, ort_type[r.weight_type], r.reduce_range)
        return {
            "quantizer": "onnxruntime.quantization.quantize_static", "format": "QDQ",
            "activation_type": r.activation_type, "weight_type": r.weight_type, "reduce_range": r.reduce_range,
            "per_channel": sc["per_channel"], "calibration_method": q.method.value, **sc["record"],
            **({"percentile": q.percentile} if q.method is CalibrationMethod.PERCENTILE else {}),
            "preprocess": "quant_pre_process (onnx shape inference + ORT graph optimization)",
            **({"lstm": lstm} if lstm else {}), **float_report(dst),
            **({"kept_float": list(job.keep_float)} if job.keep_float else {}),
            **({"float_by_scope": by_scope} if by_scope else {}),
            **({"int16_activations": {"layers": list(job.int16_layers), "tensors": int16}} if int16 else {}),
        }

    @staticmethod
    def _int8_dynamic(src: Path, dst: Path, r: OrtRecipe, sc: dict[str, Any],
                      keep_float: Sequence[str] = ()) -> dict[str, Any]:
        from onnxruntime.quantization import QuantType as OrtType
        from onnxruntime.quantization import quantize_dynamic

        weight = OrtType.QUInt8 if r.weight_type == "uint8" else OrtType.QInt8
        by_scope = [n for n in attention_matmuls(src) if n not in keep_float] if sc.get("transformer") else []
        quantize_dynamic(str(src), str(dst), weight_type=weight, reduce_range=r.reduce_range,
                         op_types_to_quantize=sc["op_types"], per_channel=sc["per_channel"],
                         extra_options=sc["extra_options"], nodes_to_exclude=list(keep_float) + by_scope)
        return {"quantizer": "onnxruntime.quantization.quantize_dynamic", "weight_type": r.weight_type,
                "reduce_range": r.reduce_range, "activations": "quantized at run time (uint8)",
                "op_types": sc["op_types"], "per_channel": sc["per_channel"], **sc["record"], **float_report(dst),
                **({"kept_float": list(keep_float)} if keep_float else {}),
                **({"float_by_scope": by_scope} if by_scope else {})}

    def calibration_variants(self, job: ExportJob, precision: Precision) -> tuple[list[tuple[str, ExportJob]], list[str]]:
        """Static INT8: the calibration methods onnxruntime has besides the configured one."""
        import dataclasses

        if Precision(precision) is not Precision.INT8:
            return [], [f"onnx-{precision}: dynamic quantization has no calibration (activations are quantized at run time)"]
        q = job.quantization
        out = [(f"calibration {m.value}", dataclasses.replace(job, quantization=q.model_copy(update={"method": m})))
               for m in (CalibrationMethod.MINMAX, CalibrationMethod.PERCENTILE, CalibrationMethod.ENTROPY)
               if m is not q.method]
        # ORT's SmoothQuant (extra_options SmoothQuant) runs neural-compressor's transform, which
        # this environment does not ship; said, not silently left out
        skipped = ["SmoothQuant: not tried (onnxruntime's SmoothQuant needs neural-compressor, not a dependency of edgeship)"]
        return out, skipped

    def int16_activations(self, precision: Precision) -> str | None:
        if Precision(precision) is Precision.INT8:
            return None
        return "onnx-int8-dynamic: quantize_dynamic's activations are uint8 at run time"

    def layer_report(self, job: ExportJob, precision: Precision, artifact_dir: Path,
                     samples: Sequence[Sample]) -> list[LayerError]:
        """Per-node SQNR (ORT qdq_loss_debug) and gain if float (exporters/_onnx_layers.py)."""
        if Precision(precision) not in (Precision.INT8, Precision.INT8_DYNAMIC):
            return super().layer_report(job, precision, artifact_dir, samples)
        from edgeship.exporters._onnx_layers import layer_report
        from edgeship.exporting.quiet import quiet

        try:
            with quiet():   # the quantizers' and torch.onnx's own chatter, as in export()
                return layer_report(self, job, artifact_dir, samples, dynamic=Precision(precision) is Precision.INT8_DYNAMIC)
        except (UsageError, ExportError):
            raise
        except Exception as exc:
            # onnxruntime's tools refusing a graph is a fact about this artifact, said in one line, not a crash
            raise ExportError(f"{job.model_name}: onnx-{precision}: the per-layer report failed inside onnxruntime: "
                              f"{type(exc).__name__}: {_first_line(exc)}") from exc

    # -- checks ------------------------------------------------------------------------------
    def _validate(self, job: ExportJob, precision: Precision, path: Path) -> dict[str, Any]:
        import onnxruntime as ort

        try:
            sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise ExportError(f"{job.model_name}: onnx-{precision}: onnxruntime cannot load the export: {_first_line(exc)}") from exc
        feeds = validation_feeds(job)
        ref = [run_reference(job.model, f, job.inputs) for f in feeds]
        got = [sess.run(list(job.outputs), f) for f in feeds]
        host = host_target().cpu_class
        built = job.cpu_target.cpu_class if job.cpu_target is not None else host
        if precision in self.class_specific and built != host and host == "x86-avx2":
            # u8s8/s8s8 saturate on this host but not on the class the artifact is for: the host's
            # cosine would reject a good artifact. Non-finite outputs still fail; built_for holds
            # the numbers measured for that class (or says they were not measured).
            from edgeship.metrics import fidelity

            check_outputs(job, Precision.FP32, self.target, got, got)   # inf/NaN only
            return {**fidelity(ref, got), "bound_enforced": False,
                    "why": f"measured on this x86-avx2 host, where u8s8 saturates; the artifact is for {built}"}
        return check_outputs(job, precision, self.target, ref, got)

    @staticmethod
    def _output_shapes(path: Path) -> dict[str, list[int]]:
        onnx = require("onnx", "onnx")
        m = onnx.load(str(path), load_external_data=False)
        return {
            o.name: [d.dim_value if d.HasField("dim_value") else -1 for d in o.type.tensor_type.shape.dim]
            for o in m.graph.output
        }


_FP32_CACHE: dict[str, bytes] = {}


def _int16_overrides(pre: Path, layers: Sequence[str]) -> list[str]:
    """The activation tensors (not initializers) the nodes named in ``layers`` read, in ``pre``."""
    if not layers:
        return []
    import onnx

    g = onnx.load(str(pre), load_external_data=False).graph
    inits = {i.name for i in g.initializer}
    by_name = {n.name: n for n in g.node}
    missing = [x for x in layers if x not in by_name]
    if missing:
        raise UsageError(f"int16 activations: no node {', '.join(missing)} in the pre-processed graph")
    out: list[str] = []
    for x in layers:
        for i in by_name[x].input[:1] if by_name[x].op_type in ("Gemm", "MatMul", "Conv") else by_name[x].input:
            if i and i not in inits and i not in out:
                out.append(i)
    return out


def _fp32_key(job: ExportJob) -> str | None:
    """What the exported FP32 graph depends on: the weights' bytes, the I/O, the opset."""
    import hashlib

    h = hashlib.sha256(repr((type(job.model).__qualname__, job.target_config.opset, job.outputs,
                             [(s.name, tuple(s.shape), s.dtype) for s in job.inputs],
                             {k: (v.shape, str(v.dtype)) for k, v in job.example_inputs.items()})).encode())
    import torch

    state = getattr(job.model, "state_dict", None)
    if state is None:
        return None
    for name, t in state().items():
        h.update(name.encode())
        h.update(t.detach().cpu().reshape(-1).contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def validation_feeds(job: ExportJob) -> list[dict[str, np.ndarray]]:
    """Example inputs plus a few calibration samples (when configured) for export checks."""
    feeds = [dict(job.example_inputs)]
    if job.calibration is not None:
        feeds += [dict(s.inputs) for s in list(job.calibration_samples())[1:VALIDATION_SAMPLES]]
    return feeds


_FP32_CACHE: dict[str, Any] = {}


def _fp32_key(job: ExportJob) -> str:
    """Digest of what the fp32 graph depends on: the weights, the example inputs, names, opset."""
    import hashlib

    h = hashlib.sha256(repr((type(job.model).__qualname__, job.target_config.opset, job.outputs,
                             [(s.name, s.shape, s.dtype) for s in job.inputs])).encode())
    import torch

    # parameters and every buffer (non-persistent ones are not in state_dict)
    for name, t in [*job.model.named_parameters(), *job.model.named_buffers()]:
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.detach().cpu().reshape(-1).contiguous().view(torch.uint8).numpy().tobytes())
    for k in sorted(job.example_inputs):
        h.update(np.ascontiguousarray(job.example_inputs[k]).tobytes())
    return h.hexdigest()


def _dynamic_lstm(path: Path, weight_type: Any, reduce_range: bool) -> str | None:
    """Quantize the LSTMs of a static QDQ model dynamically, in place (ORT has no static integer
    LSTM, but has DynamicQuantizeLSTM: int8 weights, activations quantized at run time)."""
    onnx = require("onnx", "onnx")
    from onnxruntime.quantization import quantize_dynamic

    if not any(n.op_type == "LSTM" for n in onnx.load(str(path), load_external_data=False).graph.node):
        return None
    tmp = path.with_name(path.stem + ".lstm.onnx")
    quantize_dynamic(str(path), str(tmp), weight_type=weight_type, reduce_range=reduce_range, op_types_to_quantize=["LSTM"])
    tmp.replace(path)
    return "DynamicQuantizeLSTM: int8 weights, activations quantized at run time (ORT has no static integer LSTM)"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _rm_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


__all__ = ["OnnxExporter", "UsageError", "validation_feeds"]
