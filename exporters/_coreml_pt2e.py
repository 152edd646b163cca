"""W8A8 for CoreML through torch.export + PT2E, for models torch.fx cannot trace.

coremltools' ``LinearQuantizer`` prepares a model with torch.fx symbolic tracing, which stops
at Python control flow on traced values (transformers' BertModel slices by a traced length).
coremltools' own PT2E quantizer (``CoreMLQuantizer``) would not need it, but it imports
``torch.ao.quantization.quantizer``, which torch 2.13 removed. This quantizer annotates the
same thing for torchao's ``prepare_pt2e``/``convert_pt2e``: the float activation entering
every linear/conv (uint8 affine, min/max) and its weight (int8 symmetric per output channel),
which coremltools converts to MIL ``quantize``/``dequantize`` and int8 constexpr weights.
Everything else (softmax, LayerNorm, GELU, the mask arithmetic) stays float, as in the
LinearQuantizer recipe's default op set.
"""

from __future__ import annotations

from typing import Any


def make_quantizer() -> Any:
    import torch
    from torchao.quantization.pt2e import MinMaxObserver, PerChannelMinMaxObserver
    from torchao.quantization.pt2e.quantizer import QuantizationAnnotation, QuantizationSpec, Quantizer

    act = QuantizationSpec(dtype=torch.uint8, quant_min=0, quant_max=255, qscheme=torch.per_tensor_affine,
                           is_dynamic=False, observer_or_fake_quant_ctr=MinMaxObserver.with_args(eps=2**-12))
    weight = QuantizationSpec(dtype=torch.int8, quant_min=-127, quant_max=127, qscheme=torch.per_channel_symmetric,
                              ch_axis=0, is_dynamic=False,
                              observer_or_fake_quant_ctr=PerChannelMinMaxObserver.with_args(eps=2**-12))
    aten = torch.ops.aten
    targets = {aten.linear.default, aten.conv1d.default, aten.conv2d.default}

    class W8A8(Quantizer):  # type: ignore[misc]
        def annotate(self, model: Any) -> Any:
            for node in model.graph.nodes:
                if node.op != "call_function" or node.target not in targets:
                    continue
                x, w = node.args[0], node.args[1]
                if not (isinstance(x, torch.fx.Node) and isinstance(w, torch.fx.Node)):
                    continue
                val = x.meta.get("val")
                if not isinstance(val, torch.Tensor) or not val.is_floating_point():
                    continue
                node.meta["quantization_annotation"] = QuantizationAnnotation(
                    input_qspec_map={x: act, w: weight}, _annotated=True)
            return model

        def validate(self, model: Any) -> None:
            return None

    return W8A8()


def calibrate(model: Any, example_args: tuple[Any, ...], feeds: Any) -> Any:
    """torch.export ``model``, observe ``feeds`` (tuples of tensors), return the converted module."""
    import torch
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    from edgeship.exporters._layer_sim import eval_mode

    # torch.export records the mode it traces in: dropout would keep dropping (BatchNorm is folded
    # into its conv with the running statistics by prepare_pt2e in either mode)
    with eval_mode(model):
        exported = torch.export.export(model, example_args).module()
    prepared = prepare_pt2e(exported, make_quantizer())
    with torch.no_grad():
        for args in feeds:
            prepared(*args)
    return convert_pt2e(prepared)
