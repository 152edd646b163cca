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

from collections.abc import Sequence
from typing import Any, ClassVar


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

    from edgeship.exporters._tflite_layers import layer_id

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
