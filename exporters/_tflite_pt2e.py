"""The PT2E quantizer for TFLite int8: litert-torch's, plus add/mul matched by ATen target.

litert-torch's ``PT2EQuantizer`` annotates conv and linear by ATen op, but add, mul, cat and
pooling by the ``source_fn_stack`` node metadata holding the Python operator (``operator.add``).
Strict ``torch.export`` records that; non-strict export records nothing, and a ``.pt2``
program's ``module()`` records ATen overloads. An add it misses is lowered as DEQUANTIZE ->
float ADD -> QUANTIZE (MobileNetV2's chained residuals). ``Quantizer`` annotates the adds and
muls left over by their ATen target the way litert-torch annotates the ones it finds, so
residual connections are int8 whatever captured the graph.

Only float paths are quantized: an annotation on an integer tensor (token ids, position ids
from ``arange``, integer masks) is dropped, so embedding lookups index with the integer ids
they were given. GRUs are not annotated as a whole: litert-torch's ``gru_io_only`` pattern
asserts that both GRU outputs are used (``y, _ = gru(x)`` uses one) and it marks the cell
float anyway; without it the cell stays float like an LSTM's (recipe.integer_graph says so).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, ClassVar

from edgeship.errors import ExportError, UsageError
from edgeship.exporters.base import ExportJob
from edgeship.types import CalibrationMethod


def make_quantizer(config: Any, keep_float: Sequence[str] = ()) -> Any:
    """A litert-torch ``PT2EQuantizer`` subclass instance with ``config`` as its global config.

    The ops of the layers in ``keep_float`` (ids of exporters/_tflite_layers.py) get no
    annotation, so they stay float (accuracy-aware INT8).
    """
    import torch
    from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer
    from litert_torch.quantize.pt2e_quantizer_utils import (
        _is_annotated,
        get_input_act_qspec,
        get_output_act_qspec,
        propagate_annotation,
    )
    from torchao.quantization.pt2e.quantizer import QuantizationAnnotation


    keep = frozenset(keep_float)
    binary = (torch.ops.aten.add.Tensor, torch.ops.aten.mul.Tensor)

    class Quantizer(PT2EQuantizer):  # type: ignore[misc]
        STATIC_OPS: ClassVar[list[str]] = [op for op in PT2EQuantizer.STATIC_OPS if op != "gru_io_only"]

        def _annotate_all_static_patterns(self, model: Any, config: Any, filter_fn: Any = None) -> Any:
            if keep:
                inner = filter_fn
                filter_fn = lambda n: layer_id(n) not in keep and (inner is None or inner(n))
            return super()._annotate_all_static_patterns(model, config, filter_fn)

        def annotate(self, model: Any) -> Any:
            model = super().annotate(model)
            cfg = self.global_config
            if cfg is None or cfg.input_activation is None:   # dynamic quantization: activations stay float
                return model
            _float_paths_only(torch, model)
            added = 0
            for node in model.graph.nodes:
                if (node.op != "call_function" or node.target not in binary or _is_annotated([node])
                        or layer_id(node) in keep):
                    continue
                val = node.meta.get("val")
                if not isinstance(val, torch.Tensor) or not val.is_floating_point():
                    continue
                inputs = [a for a in node.args[:2] if isinstance(a, torch.fx.Node)]
                node.meta["quantization_annotation"] = QuantizationAnnotation(
                    input_qspec_map={a: get_input_act_qspec(cfg) for a in inputs},
                    output_qspec=get_output_act_qspec(cfg), _annotated=True,
                )
                added += 1
            if added:
                propagate_annotation(model)   # view ops after the new outputs share their qparams
                _float_paths_only(torch, model)
            return model

    return Quantizer().set_global(config)


def _float_paths_only(torch: Any, model: Any) -> None:
    """Quantize float paths only: drop annotations on integer tensors, and leave every op that
    takes a value computed from integer inputs and constants alone (in float).

    Such "mask-like" values carry no learned weights: attention masks turned into additive
    ``finfo.min`` fills, 0/1 pooling masks, ids from ``arange``. An int8 observer on a
    ``-3.4e38`` fill makes the scale so coarse that the attention scores it is added to all
    round to zero (and litert-torch lowers the fill's SELECT_V2 to an int8 model LiteRT aborts
    on), so the add that applies a mask computes in float, between DEQUANTIZE and QUANTIZE.
    """
    def is_float(node: Any) -> bool:
        val = node.meta.get("val") if isinstance(node, torch.fx.Node) else None
        return isinstance(val, torch.Tensor) and val.is_floating_point()

    mask_like: set[Any] = set()
    for node in model.graph.nodes:
        if node.op in ("placeholder", "get_attr"):
            if not is_float(node):
                mask_like.add(node)
        elif node.op == "call_function" and all(a in mask_like for a in node.all_input_nodes):
            mask_like.add(node)   # (no inputs: a constant)
    for node in model.graph.nodes:
        ann = node.meta.get("quantization_annotation")
        if ann is None:
            continue
        if any(a in mask_like and is_float(a) for a in node.all_input_nodes):
            ann.input_qspec_map.clear()
            ann.output_qspec = None
            continue
        for arg in [a for a in ann.input_qspec_map if not is_float(a)]:
            del ann.input_qspec_map[arg]
        if ann.output_qspec is not None and not is_float(node):
            ann.output_qspec = None


_SELF = re.compile(r"^L\['self'\]\.?")


def module_fqn(node: Any) -> str | None:
    """The innermost PyTorch module ``node`` was traced in (None for the root module)."""
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return None
    fqn = _SELF.sub("", str(list(stack.values())[-1][0]))
    return fqn or None


def layer_id(node: Any) -> str:
    return module_fqn(node) or node.name


def int8_config(job: ExportJob) -> tuple[Any, str]:
    """The PT2E quantization config of tflite int8 and its activation observer's name."""
    from litert_torch.quantize.pt2e_quantizer import get_symmetric_quantization_config
    from torchao.quantization.pt2e.observer import HistogramObserver, MinMaxObserver

    q = job.quantization
    observers = {CalibrationMethod.MINMAX: MinMaxObserver, CalibrationMethod.PERCENTILE: HistogramObserver}
    if q.method not in observers:
        raise UsageError(
            f"key 'quantization.method': tflite int8 supports 'minmax' and 'percentile' "
            f"(histogram) calibration; '{q.method}' has no PT2E observer"
        )
    config = get_symmetric_quantization_config(is_per_channel=q.per_channel)
    act = _with_observer(config.input_activation, observers[q.method])
    return _replace(config, input_activation=act, output_activation=act), observers[q.method].__name__


def capture(torch: Any, job: ExportJob, notes: list[str]) -> tuple[Any, str]:
    """torch.export the model for PT2E annotation; returns (graph module, how it was captured).

    Strict (TorchDynamo) tracing first: litert-torch's quantizer finds cat, pooling and GRUs by
    the ``source_fn_stack`` that only strict tracing records (add and mul are also matched by
    ATen target, _tflite_pt2e.py). A model that strict tracing cannot capture is captured
    non-strict, and the manifest says so.
    """
    try:
        return torch.export.export(job.model, job.example_args(), strict=True).module(), "torch.export strict"
    except Exception as strict_exc:   # noqa: BLE001 (TorchDynamo raises many types; the non-strict try decides)
        reason = first_line(f"{type(strict_exc).__name__}: {strict_exc}")
    try:
        module = torch.export.export(job.model, job.example_args()).module()
    except Exception as exc:
        raise ExportError(f"{job.model_name}: tflite-int8: torch.export failed: {describe_failure(exc)}") from exc
    notes.append(f"strict torch.export failed ({reason}); captured non-strict, where the PT2E quantizer "
                 "cannot match cat/pooling (recipe.integer_graph lists what stayed float)")
    return module, "torch.export non-strict (strict failed)"


def _replace(obj: Any, **changes: Any) -> Any:
    import dataclasses

    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.replace(obj, **changes)
    return obj._replace(**changes)   # NamedTuple


def _with_observer(spec: Any, observer: Any) -> Any:
    return _replace(spec, observer_or_fake_quant_ctr=observer.with_args(eps=2**-12))


_OP_PATTERNS = (
    re.compile(r"Lowering not found: ([\w.]+)"),
    re.compile(r"failed to legalize operation '([\w.]+)'"),
    re.compile(r"'([\w.]+)' op (?:is )?(?:neither a custom op nor a flex op|not supported)"),
    re.compile(r"(aten\.[\w.]+)"),
    re.compile(r"lowering for ([\w.:]+)"),
)


def describe_failure(exc: BaseException) -> str:
    """Name the op that could not be lowered when the converter's message tells it."""
    text = f"{type(exc).__name__}: {exc}"
    for pat in _OP_PATTERNS:
        m = pat.search(text)
        if m:
            return f"op '{m.group(1)}' cannot be lowered to TFLite by litert-torch ({first_line(text)})"
    return first_line(text)


def first_line(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[0][:300] if lines else text
