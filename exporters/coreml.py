"""CoreML (ML Program, .mlpackage) with coremltools.

    fp32         compute_precision FLOAT32
    fp16         compute_precision FLOAT16 (the ML Program default)
    int8-weight  fp16 program + linear_quantize_weights (int8, per-channel symmetric)
    int8         W8A8: activations and weights quantized. Calibrated in PyTorch with
                 coremltools.optimize.torch's LinearQuantizer (observers run on the project's
                 samples), then converted: coremltools' own linear_quantize_activations needs
                 MLModel.predict, which exists only on macOS, so this path is the one that
                 runs everywhere. The manifest records it. A model torch.fx cannot trace
                 (LinearQuantizer's capture; transformers' BertModel) is quantized with
                 torch.export + PT2E instead (exporters/_coreml_pt2e.py), recorded as why_pt2e.

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

from edgeship.errors import ConfigError, ExportError, UsageError
from edgeship.exporters._coreml_layers import check_keep_float, float_mil_ops, selector
from edgeship.exporters.base import EXPORTERS, MIN_EXPORT_COSINE, Exporter, ExportJob, ExportResult
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
            observers = recipe_q.pop("observers", "coremltools.optimize.torch observers")
            calibration = {"method": f"minmax ({observers})", "samples": len(samples), "source": job.calibration_ref}
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
        _save(model, out)
        from edgeship.exporters._coreml_validate import WEIGHT_THRESHOLD, validate

        recipe["validation"] = info = validate(out, job, precision, recipe.get("weight_threshold", WEIGHT_THRESHOLD),
                                               output_shapes=_reference_shapes(job))
        return ExportResult(model_file=MODEL_FILE, recipe=recipe, calibration=calibration,
                            io_dtypes={s.name: "int32" for s in job.inputs if s.dtype == "int64"},
                            output_shapes={n: info["io"][n]["shape"] for n in job.outputs},
                            notes=self._notes(recipe, precision))

    @staticmethod
    def _notes(recipe: dict[str, Any], precision: Precision) -> list[str]:
        notes = ["CoreML executes only on macOS: validated structurally here"]
        eff = recipe.get("deployment_target_effective")
        if eff and eff != recipe["deployment_target"]:
            notes.append(f"W8A8 needs quantize/dequantize ops: deployment target raised to {eff}")
        v = recipe["validation"]
        fp32 = sorted({k.split(":")[0] for k in v["float_weight_ops"] if k.endswith(":float32")})
        if precision is Precision.FP16 and fp32:
            notes.append(f"{', '.join(fp32)} kept float32: MIL takes fp16 weights for it only from iOS17; "
                         "deployment_target = \"iOS17\" in [targets.coreml] makes it fp16")
        if precision is Precision.INT8_WEIGHT and v["int8_weight_tensors"] == 0:
            notes.append(f"no weight has more than {recipe['weight_threshold']} elements (largest "
                         f"{v['largest_float_weight']}): nothing was quantized, the weights are coreml-fp16's")
        elif precision in (Precision.INT8, Precision.INT8_WEIGHT) and v["int8_weight_fraction"] < 1.0:
            ops = sorted({k.split(":")[0] for k in v["float_weight_ops"]})
            notes.append(f"int8 holds {v['int8_weight_fraction']:.0%} of the weight elements; "
                         f"float weights remain in: {', '.join(ops)}")
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
            quantizer = cq.LinearQuantizer(job.model, cfg)   # prepares a copy: job.model's mode is not changed
            prepared = quantizer.prepare(example_inputs=job.example_args(), inplace=False)
        except Exception as exc:
            why = _fx_untraceable(job)
            if why is None:
                raise ExportError(f"{job.model_name}: coreml-int8: W8A8 preparation in torch failed: {_first_line(exc)}") from exc
            raise FxUntraceable(why) from exc
        try:
            quantizer.step()
            # prepare() puts the copy in train mode (it is made for QAT), where a fused conv-bn
            # normalizes by each calibration batch's statistics and overwrites the running ones
            # (MobileNetV2-style nets: simulated cosine 0.16 instead of 0.9999); the observers
            # run in eval mode, on the BatchNorm the model deploys with
            prepared.eval()
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

        try:
            return layer_report(self, job, artifact_dir, samples)
        except FxUntraceable as exc:
            raise UsageError(f"{job.model_name}: coreml-int8: no per-layer report: the W8A8 simulation needs "
                             f"torch.fx capture ({exc.why})") from None

    def _w8a8(self, ct: Any, job: ExportJob, samples: Any, dep: Any) -> tuple[Any, dict[str, Any]]:
        import torch

        check_keep_float(job)
        try:
            final = self.w8a8_calibrated(job, samples, job.keep_float)
        except FxUntraceable as exc:
            if job.keep_float:
                raise ExportError(f"{job.model_name}: coreml-int8: layers cannot be kept float on the torch.export "
                                  f"+ PT2E path ({exc.why})") from None
            return self._w8a8_pt2e(ct, job, samples, dep, exc.why)
        simulated = _simulated_fidelity(job, final, samples)
        _check_simulation(job, simulated)
        _align_scale_ranks(final)
        try:
            traced = torch.jit.trace(final, job.example_args())
        except Exception as exc:
            # calibration succeeded; it is the capture for the converter that failed. The PT2E
            # path captures with torch.export instead (the way models torch.fx cannot trace go)
            why = f"torch.jit.trace of the calibrated module failed: {_first_line(exc)[:160]}"
            if job.keep_float:
                raise ExportError(f"{job.model_name}: coreml-int8: {why}; layers cannot be kept float on the "
                                  "torch.export + PT2E path") from exc
            return self._w8a8_pt2e(ct, job, samples, dep, why)
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
            # CoreML cannot run here: the calibrated fake-quant module is the numerics evidence
            "torch_simulation": simulated,
            # accuracy-aware INT8: modules left float, the selector that did it, and the MIL ops
            # that really compute in float (read back from the converted program)
            "kept_float": list(job.keep_float), "op_selector": selector(job.keep_float),
            "float_mil_ops": float_mil_ops(model),
        }

    def _w8a8_pt2e(self, ct: Any, job: ExportJob, samples: Any, dep: Any, why: str) -> tuple[Any, dict[str, Any]]:
        """W8A8 of a model torch.fx cannot trace: torch.export + PT2E (exporters/_coreml_pt2e.py)."""
        import torch

        require("torchao", "coreml", "CoreML W8A8 of models torch.fx cannot trace")
        from edgeship.exporters import _coreml_pt2e

        feeds = [tuple(torch.from_numpy(np.ascontiguousarray(s.inputs[i.name])) for i in job.inputs) for s in samples]
        step = "PT2E calibration (torch.export, prepare_pt2e, observers, convert_pt2e)"
        try:
            final = _coreml_pt2e.calibrate(job.model, job.example_args(), feeds)
            simulated = _simulated_fidelity(job, final, samples, "PT2E quantize/dequantize module")
            step = "torch.export of the converted PT2E module"
            program = torch.export.export(final, job.example_args()).run_decompositions({})
        except Exception as exc:
            raise ExportError(f"{job.model_name}: coreml-int8: W8A8 through torch.export + PT2E failed at {step} "
                              f"(tried because {why}): {_first_line(exc)}") from exc
        _check_simulation(job, simulated)
        dep17 = max(dep, ct.target.iOS17)
        model = self._convert(ct, job, program, ct.precision.FLOAT32, dep17)
        return model, {
            "quantization": "W8A8", "weights": "int8 symmetric per-channel", "activations": "uint8 affine",
            "quantized_ops": "inputs and weights of linear/conv; the rest float",
            "observers": "torchao PT2E observers",   # moved into the manifest's calibration record
            "quantizer": "torchao PT2E (prepare_pt2e/convert_pt2e), exporters/_coreml_pt2e.py's W8A8 annotation",
            "why_pt2e": (why if why.startswith("torch.jit.trace") else
                         f"coremltools' LinearQuantizer needs torch.fx symbolic tracing, which fails on this model ({why})"),
            "capture": "torch.export of the converted PT2E module",
            "why_not_linear_quantize_activations": "it calibrates with MLModel.predict, which needs macOS",
            "compute_precision": "float32",
            "deployment_target_effective": dep17.name,
            "torch_simulation": simulated,
        }


def _fx_untraceable(job: ExportJob) -> str | None:
    """Why torch.fx cannot trace the model (LinearQuantizer's capture), or None if it can.

    Symbolic tracing cannot follow Python control flow on tensor values (e.g. transformers'
    slicing by a traced length); such models take the torch.export + PT2E path instead.
    """
    import torch

    try:
        torch.fx.symbolic_trace(job.model)
    except Exception as exc:  # noqa: BLE001  (any tracing failure: LinearQuantizer cannot capture it)
        return _first_line(exc)[:120]
    return None


def _simulated_fidelity(job: ExportJob, final: Any, samples: Any,
                        what: str = "coremltools.optimize.torch fake-quant module") -> dict[str, Any]:
    """Outputs of the calibrated fake-quant module vs the FP32 model on up to 16 calibration
    samples. Torch simulates the W8A8 numerics the converted program computes on the Mac: the
    export fails under the INT8 bound (``_check_simulation``), and eval/gate judge the recorded
    numbers as "simulated" evidence (docs/gate.md, "The evidence chain").
    """
    import torch

    from edgeship.exporters._layer_sim import eval_mode
    from edgeship.metrics import fidelity

    def run(model: Any) -> list[list[np.ndarray]]:
        out = []
        with torch.no_grad():
            for s in list(samples)[:16]:
                y = model(*(torch.from_numpy(np.ascontiguousarray(s.inputs[i.name])) for i in job.inputs))
                out.append([t.numpy() for t in (y if isinstance(y, (tuple, list)) else (y,))])
        return out

    with eval_mode(job.model):
        reference = run(job.model)
    fid = fidelity(reference, run(final))
    return {"what": f"{what} vs FP32, calibration samples",
            "samples": min(len(samples), 16), **{k: None if v is None else round(float(v), 6) for k, v in fid.items()}}


def _check_simulation(job: ExportJob, simulated: dict[str, Any]) -> None:
    """A W8A8 whose simulation is under the INT8 export bound is broken: the export fails, as an
    ONNX or TFLite INT8 whose outputs miss it does (exporters/base.py, check_outputs)."""
    bound = MIN_EXPORT_COSINE[Precision.INT8]
    cos = simulated.get("cosine_min")
    if cos is None or not cos >= bound:   # nan, None: no number that says it works
        got = "none" if cos is None else f"{cos:.5f}"
        raise ExportError(
            f"{job.model_name}: coreml-int8: the W8A8 simulation in torch ({simulated.get('what', 'fake-quant module')}) "
            f"does not match the PyTorch reference (min cosine {got} < {bound} on {simulated['samples']} calibration "
            "samples); the artifact was not written")


def _reference_shapes(job: ExportJob) -> dict[str, list[int]]:
    """The PyTorch model's output shapes on the example inputs (the package must declare them)."""
    import torch

    with torch.no_grad():
        out = job.model(*job.example_args())
    outs = out if isinstance(out, (tuple, list)) else (out,)
    return {n: [int(d) for d in o.shape] for n, o in zip(job.outputs, outs)}


def _align_scale_ranks(model: Any) -> None:
    """Give each per-channel weight scale (and zero point) the rank of its weight.

    The quantizer records a Conv1d weight's (out, in, k) per-channel scale as (out, 1);
    coremltools' converter expands only rank-4 (Conv2d) weights' scales and rejects the rest
    ("the `weight` should have same rank as `scale`"). Trailing 1s broadcast the same values.
    """
    prefix = "_COREML_/"
    for module in model.modules():
        for key, buf in list(module._buffers.items()):
            if buf is None or not key.startswith(prefix) or not key.endswith(("/quantization_scale", "/zero_point")):
                continue
            param = getattr(module, key[len(prefix):].split("/")[0], None)
            if param is not None and 0 < buf.dim() < param.dim() and buf.shape[0] == param.shape[0]:
                module._buffers[key] = buf.reshape(*buf.shape, *([1] * (param.dim() - buf.dim())))


def _save(model: Any, out: Path) -> None:
    """Save the .mlpackage without coremltools' ExecuTorch debug-handle map.

    For a program captured with torch.export, ``MLModel.save`` also writes
    ``executorch_debug_handle_mapping.json`` into the package (a map for ExecuTorch's
    profiler, not part of the model; nothing here reads it), and raises "Multi-block case has
    not been supported yet" instead when the program has a ``while_loop`` (a GRU). It builds
    that map only when the model holds its MIL program, so the program is detached while saving.
    """
    program = getattr(model, "_mil_program", None)
    model._mil_program = None
    try:
        model.save(str(out))
    finally:
        model._mil_program = program


class FxUntraceable(Exception):
    """coremltools' LinearQuantizer cannot capture the model with torch.fx (``why`` says which part)."""

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


def _no_progress_bars() -> contextlib.AbstractContextManager[object]:
    if os.environ.get("EDGESHIP_VERBOSE"):
        return contextlib.nullcontext()
    return contextlib.redirect_stderr(io.StringIO())


def _first_line(exc: BaseException) -> str:
    text = [ln for ln in str(exc).strip().splitlines() if ln.strip()]
    return (text[0] if text else type(exc).__name__)[:300]
