"""CoreML (ML Program, .mlpackage) with coremltools.

    fp32         compute_precision FLOAT32
    fp16         compute_precision FLOAT16 (the ML Program default)
    int8-weight  fp16 program + linear_quantize_weights (int8, per-channel symmetric)
    int8         W8A8: activations and weights quantized. Calibrated in PyTorch with
                 coremltools.optimize.torch's LinearQuantizer (observers run on the project's
                 samples), then converted: coremltools' own linear_quantize_activations needs
                 MLModel.predict, which exists only on macOS, so this path is the one that
                 runs everywhere. The manifest records it.

coremltools 9 is tested with torch <= 2.7: models are captured with torch.export +
run_decompositions({}) (W8A8 with torch.jit.trace of the calibrated module), and the op
translations missing under torch 2.13 are registered by exporters/_coreml_ops.py.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgeship.errors import ConfigError, ExportError
from edgeship.exporters._coreml_layers import check_keep_float, float_mil_ops, selector
from edgeship.exporters.base import EXPORTERS, Exporter, ExportJob, ExportResult
from edgeship.lazy import require
from edgeship.types import Precision, Target

MODEL_FILE = "model.mlpackage"
COMPUTE_UNITS = ("CPU_ONLY", "CPU_AND_GPU", "CPU_AND_NE", "ALL")   # as in runtimes/coreml.py


def compute_units(name: str) -> str:
    """Checked here so a typo fails at export, not later on the Mac; the runtime reads it back."""
    if name.upper() not in COMPUTE_UNITS:
        raise ConfigError(f"key 'targets.coreml.compute_units': unknown '{name}'; use one of {', '.join(COMPUTE_UNITS)}")
    return name.upper()


def deployment_target(ct: Any, name: str) -> Any:
    target = getattr(ct.target, name, None)
    if target is None:
        known = [n for n in dir(ct.target) if n.startswith(("iOS", "macOS", "watchOS", "tvOS"))]
        import difflib

        near = difflib.get_close_matches(name, known, n=1)
        hint = f"; did you mean '{near[0]}'?" if near else ""
        raise ConfigError(f"key 'targets.coreml.deployment_target': unknown '{name}' (e.g. iOS16, macOS13){hint}")
    return target


@EXPORTERS.register("coreml")
class CoreMLExporter(Exporter):
    target = Target.COREML
    runtime = "coreml"
    precisions = (Precision.FP32, Precision.FP16, Precision.INT8, Precision.INT8_WEIGHT)
    version_modules = ("torch", "coremltools")

    def _export(self, job: ExportJob, precision: Precision, workdir: Path) -> ExportResult:
        # coremltools draws tqdm bars on stderr for every pass pipeline; failures still raise
        with _no_progress_bars():
            return self._export_quietly(job, precision, workdir)

    def _export_quietly(self, job: ExportJob, precision: Precision, workdir: Path) -> ExportResult:
        ct = require("coremltools", "coreml", "CoreML export")
        from edgeship.exporters import _coreml_ops

        _coreml_ops.register()
        dep_name = job.target_config.deployment_target
        dep = deployment_target(ct, dep_name)
        recipe: dict[str, Any] = {"format": "mlprogram", "deployment_target": dep_name,
                                  "compute_units": compute_units(job.target_config.compute_units)}
        calibration = None
        if precision is Precision.INT8:
            samples = job.calibration_samples()
            model, recipe_q = self._w8a8(ct, job, samples, dep)
            calibration = {"method": "minmax (coremltools.optimize.torch observers)", "samples": len(samples),
                           "source": job.calibration_ref}
            recipe.update(recipe_q)
        else:
            prec = ct.precision.FLOAT32 if precision is Precision.FP32 else ct.precision.FLOAT16
            model = self._convert(ct, job, self._capture(job), prec, dep)
            recipe["capture"] = "torch.export + run_decompositions({})"
            recipe["compute_precision"] = "float32" if precision is Precision.FP32 else "float16"
            if precision is Precision.INT8_WEIGHT:
                import coremltools.optimize.coreml as cto

                cfg = cto.OptimizationConfig(global_config=cto.OpLinearQuantizerConfig(
                    mode="linear_symmetric", dtype="int8", granularity="per_channel"))
                model = cto.linear_quantize_weights(model, cfg)
                # coremltools' default weight_threshold: tensors under 2048 elements stay fp16
                recipe.update(quantization="weight-only", weights="int8 linear symmetric, per-channel",
                              weight_threshold=cfg.global_config.weight_threshold,
                              quantizer="coremltools.optimize.coreml.linear_quantize_weights")
        out = workdir / MODEL_FILE
        model.save(str(out))
        from edgeship.coreml_validate import validate

        recipe["validation"] = validate(out, job, precision)
        return ExportResult(model_file=MODEL_FILE, recipe=recipe, calibration=calibration,
                            io_dtypes={s.name: "int32" for s in job.inputs if s.dtype == "int64"},
                            notes=self._notes(recipe))

    @staticmethod
    def _notes(recipe: dict[str, Any]) -> list[str]:
        notes = ["CoreML executes only on macOS: validated structurally here"]
        eff = recipe.get("deployment_target_effective")
        if eff and eff != recipe["deployment_target"]:
            notes.append(f"W8A8 needs quantize/dequantize ops: deployment target raised to {eff}")
        if recipe.get("kept_float"):
            notes.append(f"W8A8 with module(s) kept float on request: {', '.join(recipe['kept_float'])} "
                         f"(ML program ops computing in float: {', '.join(recipe['float_mil_ops']) or 'none'})")
        return notes

    # -- conversions -------------------------------------------------------------------------
    @staticmethod
    def _capture(job: ExportJob) -> Any:
        import torch

        try:
            return torch.export.export(job.model, job.example_args()).run_decompositions({})
        except Exception as exc:
            raise ExportError(f"{job.model_name}: coreml: torch.export failed: {_first_line(exc)}") from exc

    @staticmethod
    def _inputs(ct: Any, job: ExportJob) -> list[Any]:
        return [ct.TensorType(name=s.name, shape=s.shape, dtype=np.int32 if s.dtype in ("int64", "int32") else np.float32)
                for s in job.inputs]

    def _convert(self, ct: Any, job: ExportJob, program: Any, precision: Any, dep: Any) -> Any:
        try:
            return ct.convert(
                program, inputs=self._inputs(ct, job), outputs=[ct.TensorType(name=n, dtype=np.float32) for n in job.outputs],  # float I/O
                convert_to="mlprogram", compute_precision=precision, minimum_deployment_target=dep,
            )
        except Exception as exc:
            raise ExportError(f"{job.model_name}: coreml: conversion failed: {_first_line(exc)}") from exc

    @staticmethod
    def w8a8_calibrated(job: ExportJob, samples: Any, keep_float: Sequence[str] = ()) -> Any:
        """The W8A8 simulation in torch (finalized fx module); ``keep_float`` modules stay float."""
        import coremltools.optimize.torch.quantization as cq
        import torch

        cfg = cq.LinearQuantizerConfig.from_dict({"global_config": {
            "quantization_scheme": "symmetric", "weight_dtype": "qint8", "activation_dtype": "quint8",
            "weight_per_channel": True, "milestones": [0, 0, 10, 10],
            "activation_observer": "min_max",   # post-training: the moving average (default) lags behind a few samples
        }, **selector(keep_float)})
        try:
            quantizer = cq.LinearQuantizer(job.model, cfg)
            prepared = quantizer.prepare(example_inputs=job.example_args(), inplace=False)
            quantizer.step()
            with torch.no_grad():
                for s in samples:
                    prepared(*(torch.from_numpy(np.ascontiguousarray(s.inputs[i.name])) for i in job.inputs))
            return quantizer.finalize(inplace=False).eval()
        except Exception as exc:
            raise ExportError(f"{job.model_name}: coreml-int8: W8A8 calibration in torch failed: {_first_line(exc)}") from exc

    def layer_report(self, job: ExportJob, precision: Precision, artifact_dir: Path,
                     samples: Sequence[Any]) -> list[Any]:
        if Precision(precision) is not Precision.INT8:
            return super().layer_report(job, precision, artifact_dir, samples)
        from edgeship.exporters._coreml_layers import layer_report

        return layer_report(job, artifact_dir, samples)

    def _w8a8(self, ct: Any, job: ExportJob, samples: Any, dep: Any) -> tuple[Any, dict[str, Any]]:
        import torch

        check_keep_float(job)
        final = self.w8a8_calibrated(job, samples, job.keep_float)
        try:
            traced = torch.jit.trace(final, job.example_args())
        except Exception as exc:
            raise ExportError(f"{job.model_name}: coreml-int8: W8A8 calibration in torch failed: {_first_line(exc)}") from exc
        # quantize/dequantize ops of activations need iOS17 / macOS14 ML Programs
        dep17 = max(dep, ct.target.iOS17)
        model = self._convert(ct, job, traced, ct.precision.FLOAT32, dep17)
        return model, {
            "quantization": "W8A8", "weights": "int8 symmetric per-channel", "activations": "uint8 affine",
            "quantizer": "coremltools.optimize.torch.quantization.LinearQuantizer (post-training calibration)",
            "capture": "torch.jit.trace of the calibrated module",
            "why_not_linear_quantize_activations": "it calibrates with MLModel.predict, which needs macOS",
            "compute_precision": "float32",
            "deployment_target_effective": dep17.name,
            # accuracy-aware INT8: modules left float, the selector that did it, and the MIL ops
            # that really compute in float (read back from the converted program)
            "kept_float": list(job.keep_float), "op_selector": selector(job.keep_float),
            "float_mil_ops": float_mil_ops(model),
        }


def _no_progress_bars() -> contextlib.AbstractContextManager[object]:
    if os.environ.get("EDGESHIP_VERBOSE"):
        return contextlib.nullcontext()
    return contextlib.redirect_stderr(io.StringIO())


def _first_line(exc: BaseException) -> str:
    text = [ln for ln in str(exc).strip().splitlines() if ln.strip()]
    return (text[0] if text else type(exc).__name__)[:300]
