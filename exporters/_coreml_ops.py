"""Torch op translations coremltools 9 lacks under torch 2.13 (it is tested up to torch 2.7).

Registered once, on first CoreML export, with coremltools' own ``register_torch_op``. Each
entry names the op, why it appears with newer torch, and what it lowers to.

- ``alias``: torch >= 2.8's ``run_decompositions`` leaves ``aten.alias`` (a view with the same
  data) where older releases emitted nothing, e.g. around attention-mask slicing. It has no
  computation: mapped to the input itself, like coremltools' own no-op list (clone, detach).
- ``int`` / ``bool`` (TorchScript casts, e.g. ``int(mask.sum())`` in traced attention code):
  coremltools folds a constant 1-element tensor with ``int(x.val)``, which numpy 2 rejects for
  arrays of shape (1,) ("only 0-dimensional arrays can be converted"). Re-registered to fold
  with ``.item()``; non-constant inputs lower to squeeze + cast exactly as before.
"""

from __future__ import annotations

import numpy as np

_registered = False


def register() -> None:
    global _registered
    if _registered:
        return
    from coremltools.converters.mil.frontend.torch.ops import _get_inputs
    from coremltools.converters.mil.frontend.torch.torch_op_registry import _TORCH_OPS_REGISTRY, register_torch_op

    if "alias" not in _TORCH_OPS_REGISTRY:

        @register_torch_op
        def alias(context, node):  # type: ignore[no-untyped-def]
            context.add(_get_inputs(context, node, expected=1)[0], torch_name=node.name)

    from coremltools.converters.mil import Builder as mb

    def cast(context, node, dtype, dtype_name):  # type: ignore[no-untyped-def]
        x = _get_inputs(context, node, expected=1)[0]
        if x.can_be_folded_to_const():
            res = mb.const(val=dtype(np.asarray(x.val).reshape(-1)[0].item()), name=node.name)
        elif len(x.shape) > 0:
            res = mb.cast(x=mb.squeeze(x=x, name=node.name + "_item"), dtype=dtype_name, name=node.name)
        else:
            res = mb.cast(x=x, dtype=dtype_name, name=node.name)
        context.add(res, node.name)

    @register_torch_op(torch_alias=["int"], override=True)
    def _int(context, node):  # type: ignore[no-untyped-def]
        cast(context, node, int, "int32")

    @register_torch_op(torch_alias=["bool"], override=True)
    def _bool(context, node):  # type: ignore[no-untyped-def]
        cast(context, node, bool, "bool")

    _registered = True
