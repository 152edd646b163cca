"""TFLite (LiteRT) with litert-torch: no TensorFlow needed.

    fp32          litert_torch.convert
    fp16          fp32 model + ai_edge_quantizer FLOAT_CASTING (float16 weights, float32 compute/I-O)
    int8          PT2E static full-integer quantization calibrated on the project's samples,
                  per-channel symmetric weights; io = "float" adds QUANTIZE/DEQUANTIZE edges
                  (float32 I/O), io = "int8" exposes int8 I/O with scale/zero point in the manifest;
                  ops left in float are listed in recipe.integer_graph
    int8-dynamic  ai_edge_quantizer dynamic_wi8_afp32 (int8 weights, activations at run time)
    int8-weight   ai_edge_quantizer weight_only_wi8_afp32 (int8 weights, float compute)
    int4-weight   ai_edge_quantizer weight_only_wi4_afp32 (int4 weights, float compute; opt-in)

Calibration methods for int8: minmax -> MinMaxObserver, percentile -> HistogramObserver
(histogram range search that clips outliers; the closest PT2E offers). entropy (KL) has no
PT2E observer and is rejected.

Quantized models are written by ``_tflite_fb.write``, which stores identical quantization
vectors once (recipe.serialization says how many were shared).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgeship.calibration import Sample
from edgeship.errors import ExportError
from edgeship.exporters._tflite_io import float_params, input_casts, name_io
from edgeship.exporters._tflite_pt2e import capture, describe_failure, int8_config, make_quantizer
from edgeship.exporters.base import EXPORTERS, Exporter, ExportJob, ExportResult, check_outputs
from edgeship.exporters.onnx import validation_feeds
from edgeship.lazy import require
from edgeship.model.reference import run_reference
from edgeship.types import IOType, Precision, Target

MODEL_FILE = "model.tflite"
# the last FP32 conversion: (weak reference to the model, digest of the example inputs, bytes)
_LAST_FLOAT: dict[str, Any] = {}


@EXPORTERS.register("tflite")
class TFLiteExporter(Exporter):
    target = Target.TFLITE
    runtime = "litert"
    precisions = (Precision.FP32, Precision.FP16, Precision.INT8, Precision.INT8_DYNAMIC, Precision.INT8_WEIGHT,
                  Precision.INT4_WEIGHT)
    version_modules = ("torch", "litert-torch", "ai-edge-litert", "ai-edge-quantizer")

    def _export(self, job: ExportJob, precision: Precision, workdir: Path) -> ExportResult:
        litert_torch = require("litert_torch", "tflite", "TFLite export")
        from litert_torch import _config

        _config.config.show_progress = False   # it prints rich progress to stdout
        out = workdir / MODEL_FILE
        recipe: dict[str, Any] = {"converter": "litert_torch.convert"}
        calibration = None
        # inputs keep their declared dtype; the runtime narrows 64-bit ones as the converter did
        io_dtypes = {s.name: s.dtype for s in job.inputs}
        casts = input_casts(job.inputs)
        io_quant: dict[str, dict[str, float]] = {}
        notes: list[str] = []
        if precision is Precision.INT8:
            samples = job.calibration_samples()
            recipe.update(self._int8_static(litert_torch, job, out, samples, notes))
            calibration = {"method": job.quantization.method.value, "samples": len(samples), "source": job.calibration_ref}
            self._int8_io(job, out, io_dtypes, io_quant, recipe, notes)
        else:
            self._convert_float(litert_torch, job, precision, out)
            if precision is not Precision.FP32:
                recipe.update(self._post_quantize(out, precision))
            if job.target_config.io is IOType.INT8:
                notes.append("targets.tflite.io = \"int8\" applies to full-integer (int8) models only; "
                             f"{precision} keeps its float I/O")
        if casts:
            recipe["input_casts"] = casts
        output_shapes = self._name_io(job, precision, out, notes, recipe)
        recipe["fidelity_check"] = self._validate(job, precision, out, io_dtypes, io_quant, casts)
        built_for = None
        if precision is Precision.INT8:
            from edgeship.exporting.cpuclass import host_target

            # one recipe for every class: XNNPACK's QS8 kernels widen to int32 before multiplying
            # (no u8s8 16-bit saturation), so x86 classes and arm64 compute the same numbers
            built_for = (job.cpu_target or host_target()).built_for(
                "litert int8 (unchanged for every CPU class)",
                "XNNPACK QS8 kernels accumulate in int32 on x86 (with or without VNNI) and arm64; "
                "numerics do not depend on the class, so edgeship builds one TFLite INT8 for all")
            built_for["same_for_all_classes"] = True
        return ExportResult(
            model_file=MODEL_FILE, recipe=recipe, calibration=calibration,
            io_dtypes=io_dtypes, io_quantization=io_quant, output_shapes=output_shapes, notes=notes,
            built_for=built_for,
        )

    @staticmethod
    def _name_io(job: ExportJob, precision: Precision, out: Path, notes: list[str],
                 recipe: dict[str, Any]) -> dict[str, list[int]]:
        """Give the signature the configured input/output names; return the real output shapes.
        Weight-quantized precisions also get the share of parameters left in float."""
        from edgeship.exporters import _tflite_fb as fb

        if not fb.fits(out):
            notes.append("over 2 GB: the signature keeps litert-torch's args_<i>/output_<i> names "
                         "(the runtime maps them by number)")
            return {}
        model = fb.read(out)
        try:
            shapes = name_io(model, [s.name for s in job.inputs], list(job.outputs))
        except ValueError as exc:
            raise ExportError(f"{job.model_name}: tflite-{precision}: {exc}") from None
        fb.write(model, out)
        if precision in (Precision.INT8_DYNAMIC, Precision.INT8_WEIGHT, Precision.INT4_WEIGHT):
            recipe.update(float_params(model))
        return shapes

    @staticmethod
    def _int8_io(job: ExportJob, out: Path, io_dtypes: dict[str, str], io_quant: dict[str, dict[str, float]],
                 recipe: dict[str, Any], notes: list[str]) -> None:
        """Keep litert-torch's int8 graph edges (io = "int8") or wrap them in float32 ones; check
        which ops still compute in float; write the model with shared quantization vectors."""
        from edgeship.exporters import _tflite_fb as fb
        from edgeship.exporters._tflite_quant import float_edges, integer_graph, io_params

        model = fb.read(out)
        float_io = job.target_config.io is IOType.FLOAT
        if float_io:
            n = float_edges(model)
            recipe["io"] = f"float32 ({n} QUANTIZE/DEQUANTIZE edge op(s) added around the int8 graph)"
        else:
            recipe["io"] = "int8 (callers quantize inputs / dequantize outputs with the recorded scale and zero point)"
        recipe["integer_graph"] = graph = integer_graph(model)
        # the same facts at the recipe's top level, as the other backends record them
        recipe["float_ops"] = graph["float_ops"]
        recipe.update(float_params(model))
        if graph["float_ops"]:
            ops = ", ".join(f"{op} x{n}" for op, n in graph["float_ops"].items())
            why = ("ops litert-torch's PT2E quantizer has no int8 pattern for, recurrent cells, and ops that apply masks"
                   if not job.keep_float else
                   f"kept float on request: {', '.join(job.keep_float)}; any others have no PT2E int8 pattern, "
                   "are recurrent cells or apply masks")
            notes.append(f"not fully integer: {ops} compute in float between DEQUANTIZE/QUANTIZE, holding "
                         f"{recipe['float_param_fraction']:.0%} of the parameters ({why})")
        recipe["serialization"] = fb.write(model, out)
        if float_io:
            return
        ins, outs = io_params(out)
        names = [s.name for s in job.inputs] + list(job.outputs)
        for name, p in zip(names, ins + outs):
            if p["dtype"] in ("int8", "uint8"):
                io_dtypes[name] = p["dtype"]
                io_quant[name] = {"scale": p["scale"], "zero_point": p["zero_point"]}

    def calibration_variants(self, job: ExportJob, precision: Precision) -> tuple[list[tuple[str, ExportJob]], list[str]]:
        """INT8: the other PT2E activation observer (minmax <-> percentile's HistogramObserver)."""
        import dataclasses

        from edgeship.types import CalibrationMethod

        if Precision(precision) is not Precision.INT8:
            return [], [f"tflite-{precision}: no calibration (activations are float or quantized at run time)"]
        q = job.quantization
        other = CalibrationMethod.PERCENTILE if q.method is not CalibrationMethod.PERCENTILE else CalibrationMethod.MINMAX
        return ([(f"calibration {other.value}", dataclasses.replace(job, quantization=q.model_copy(update={"method": other})))],
                ["entropy: PT2E has no KL-divergence observer"])

    def int16_activations(self, precision: Precision) -> str | None:
        return ("tflite-int8: litert-torch's PT2E quantizer has 8-bit activation configs only (16-bit activations "
                "would need ai-edge-quantizer's static A16W8 recipe on a float model, another build path)")

    def layer_report(self, job: ExportJob, precision: Precision, artifact_dir: Path,
                     samples: Sequence[Sample]) -> list[Any]:
        if Precision(precision) is not Precision.INT8:
            return super().layer_report(job, precision, artifact_dir, samples)
        from edgeship.errors import UsageError
        from edgeship.exporters._tflite_layers import layer_report
        from edgeship.exporters._tflite_pt2e import first_line

        try:
            return layer_report(job, artifact_dir, samples)
        except (UsageError, ExportError):
            raise
        except Exception as exc:
            # torch.export / PT2E refusing the re-quantization is a fact about this model, said in one line
            raise ExportError(f"{job.model_name}: tflite-int8: the per-layer report failed in PT2E: "
                              f"{first_line(f'{type(exc).__name__}: {exc}')}") from exc

    # -- conversions -------------------------------------------------------------------------
    def _convert_float(self, litert_torch: Any, job: ExportJob, precision: Precision, out: Path) -> None:
        """The FP32 conversion that fp32/fp16/int8-dynamic/int8-weight start from.

        One export run asks for it once per precision with the same model and example inputs;
        the converter is deterministic and slow (a GRU unrolled over 49 steps takes ~20 s), so
        the last result is kept (models under 256 MB) and reused while that model object lives.
        """
        import hashlib
        import weakref

        key = hashlib.sha256(b"".join(np.ascontiguousarray(a).tobytes() + str(a.dtype).encode()
                                      for a in (job.example_inputs[s.name] for s in job.inputs))).hexdigest()
        hit = _LAST_FLOAT.get("model")
        if hit is not None and hit[0]() is job.model and hit[1] == key:
            out.write_bytes(hit[2])
            return
        self._convert(litert_torch, job, precision, job.model, out)
        data = out.read_bytes()
        _LAST_FLOAT["model"] = (weakref.ref(job.model), key, data) if len(data) < 256 << 20 else None

    def _convert(self, litert_torch: Any, job: ExportJob, precision: Precision, module: Any, out: Path,
                 quant_config: Any = None) -> None:
        try:
            edge = litert_torch.convert(module, job.example_args(), quant_config=quant_config)
            edge.export(str(out))
        except Exception as exc:
            raise ExportError(f"{job.model_name}: tflite-{precision}: {describe_failure(exc)}") from exc

    def _int8_static(self, litert_torch: Any, job: ExportJob, out: Path, samples: Sequence[Sample],
                     notes: list[str]) -> dict[str, Any]:
        import torch
        from litert_torch.quantize.quant_config import QuantConfig
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

        from edgeship.exporters._tflite_layers import check_keep_float

        q = job.quantization
        config, observer = int8_config(job)
        captured, how_captured = capture(torch, job, notes)
        check_keep_float(captured, job.keep_float, job.model_name, config)
        quantizer = make_quantizer(config, job.keep_float)
        try:
            prepared = prepare_pt2e(captured, quantizer)
            with torch.no_grad():
                for s in samples:
                    prepared(*(torch.from_numpy(np.ascontiguousarray(s.inputs[i.name])) for i in job.inputs))
            converted = convert_pt2e(prepared, fold_quantize=False)
        except Exception as exc:
            raise ExportError(f"{job.model_name}: tflite-int8: PT2E quantization failed: {describe_failure(exc)}") from exc
        self._convert(litert_torch, job, Precision.INT8, converted, out, QuantConfig(pt2e_quantizer=quantizer))
        return {
            "quantizer": "PT2E (litert_torch PT2EQuantizer + add/mul by ATen target), static",
            "graph_capture": how_captured,
            "weights": "int8 symmetric",
            "granularity": "per-channel" if q.per_channel else "per-tensor",
            "activations": "int8 affine", "activation_observer": observer,
            "calibration_method": q.method.value,
            # accuracy-aware INT8: layers (module FQN / fx node name) the quantizer left in float
            "kept_float": list(job.keep_float),
        }

    @staticmethod
    def _post_quantize(path: Path, precision: Precision) -> dict[str, Any]:
        from ai_edge_quantizer import qtyping, quantizer, recipe

        from edgeship.exporters import _tflite_fb as fb

        info: dict[str, Any]
        q = quantizer.Quantizer(str(path))
        if precision is Precision.FP16:
            q.update_quantization_recipe(
                regex=".*", operation_name=qtyping.TFLOperationName.ALL_SUPPORTED,
                algorithm_key=quantizer.AlgorithmName.FLOAT_CASTING,
                op_config=qtyping.OpQuantizationConfig(
                    weight_tensor_config=qtyping.TensorQuantizationConfig(num_bits=16, dtype=qtyping.TensorDataType.FLOAT),
                    compute_precision=qtyping.ComputePrecision.FLOAT, explicit_dequantize=True,
                ),
            )
            info = {"quantizer": "ai_edge_quantizer FLOAT_CASTING", "weights": "float16",
                    "compute": "float32", "io": "float32"}
        elif precision is Precision.INT8_DYNAMIC:
            q.load_quantization_recipe(recipe.dynamic_wi8_afp32())
            info = {"quantizer": "ai_edge_quantizer dynamic_wi8_afp32", "weights": "int8 per-channel",
                    "activations": "float32, quantized at run time by the kernels"}
        elif precision is Precision.INT4_WEIGHT:
            q.load_quantization_recipe(recipe.weight_only_wi4_afp32())
            info = {"quantizer": "ai_edge_quantizer weight_only_wi4_afp32", "weights": "int4 per-channel",
                    "compute": "float32 (weights dequantized explicitly)"}
        else:
            q.load_quantization_recipe(recipe.weight_only_wi8_afp32())
            info = {"quantizer": "ai_edge_quantizer weight_only_wi8_afp32", "weights": "int8 per-channel",
                    "compute": "float32 (weights dequantized explicitly)"}
        result = q.quantize(enable_progress_report=False)
        path.write_bytes(bytes(result.quantized_model))
        if fb.fits(path):
            info["serialization"] = fb.write(fb.read(path), path)
        else:
            info["serialization"] = {"skipped": "over 2 GB: written as ai-edge-quantizer wrote it, vectors unshared"}
        return info

    # -- checks ------------------------------------------------------------------------------
    def _validate(self, job: ExportJob, precision: Precision, path: Path, io_dtypes: dict[str, str],
                  io_quant: dict[str, dict[str, float]], casts: dict[str, dict[str, str]]) -> dict[str, float]:
        from edgeship.runtimes.litert import LiteRTRuntime

        manifest = {"recipe": {"input_casts": casts},
            "inputs": [{"name": s.name, "shape": list(s.shape), "dtype": io_dtypes[s.name],
                        "quantization": io_quant.get(s.name)} for s in job.inputs],
            "outputs": [{"name": n, "dtype": io_dtypes.get(n, "float32"), "quantization": io_quant.get(n)}
                        for n in job.outputs],
        }
        feeds = validation_feeds(job)
        ref = [run_reference(job.model, f, job.inputs) for f in feeds]
        try:
            with LiteRTRuntime(str(path), manifest, threads=1) as rt:
                got = [[rt.run(f)[n] for n in job.outputs] for f in feeds]
        except Exception as exc:
            raise ExportError(f"{job.model_name}: tflite-{precision}: LiteRT cannot run the export: {exc}") from exc
        return check_outputs(job, precision, self.target, ref, got)
