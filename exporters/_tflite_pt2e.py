"""The PT2E quantizer for TFLite int8: litert-torch's, plus add/mul matched by ATen target.

litert-torch's ``PT2EQuantizer`` annotates conv and linear by ATen op, but add, mul, cat and
pooling by the ``source_fn_stack`` node metadata holding the Python operator (``operator.add``).
Strict ``torch.export`` records that; non-strict export records nothing, and a ``.pt2``
program's ``module()`` records ATen overloads. An add it misses is lowered as DEQUANTIZE ->
float ADD -> QUANTIZE (MobileNetV2's chained residuals). ``Quantizer`` annotates the adds and
muls left over by their ATen target the way litert-torch annotates the ones it finds, so
residual connections are int8 whatever captured the graph.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


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
            return model

    return Quantizer().set_global(config)
