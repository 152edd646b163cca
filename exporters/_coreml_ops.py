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
- ``new_ones`` (``tensor.new_ones(size, dtype=...)``, e.g. the boolean mask seed of transformers'
  ``_create_attention_masks``): torch >= 2.8 keeps it through ``run_decompositions({})``;
  coremltools has ``new_zeros``/``new_full`` only. Lowered to a const when the size is static,
  else to ``fill`` + cast, with the dtype torch gives it (the source tensor's unless named).
- ``gru.input`` / ``lstm.input``: torch.export keeps the fused recurrent ops under their
  overload names, which coremltools' EXIR frontend does not map to its ``gru`` / ``lstm``
  translations (registered for TorchScript's ``aten::gru``/``aten::lstm``, same schema).
  Routed to those translations (LSTM lowers to MIL's ``lstm`` op, GRU to a ``while_loop`` of
  linear/sigmoid/tanh, see coremltools' ``_add_gru_layer``). An EXIR node has one output
  (the tuple, unpacked by ``getitem``) where TorchScript has three: the node is handed to the
  translation with one name per tuple element and the tuple is bound back to the node's name,
  so ``getitem`` of the output sequence and of the final states resolves to the right value.
- ``__and__`` (``mask_a & mask_b`` on boolean masks in transformers' mask builders):
  torch.export names it ``aten.__and__.Tensor``, which coremltools' name sanitiser reduces to
  ``__and__`` (it strips dunders before the namespace, so they stay): routed to its own
  ``and`` translation (``bitwise_and``: boolean inputs only, anything else is refused).
- ``where.ScalarOther`` (``torch.where(mask, x, scalar)``, transformers' mask fill): the
  sanitiser strips ``.Scalar`` but not ``.ScalarOther``; coremltools' ``where`` translation
  already takes a scalar operand (it promotes dtypes and broadcasts): routed there.
"""

from __future__ import annotations

import copy

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

    _register_new_ones(register_torch_op, _get_inputs)
    _register_recurrent(_TORCH_OPS_REGISTRY, register_torch_op)
    ops = _TORCH_OPS_REGISTRY.name_to_func_mapping
    for alias, op in (("__and__", "and"), ("where.scalarother", "where")):   # same schema, other name
        if alias not in ops:
            _TORCH_OPS_REGISTRY.set_func_by_name(ops[op], alias)
    _registered = True


def _register_new_ones(register_torch_op, _get_inputs):  # type: ignore[no-untyped-def]
    from coremltools.converters.mil import Builder as mb
    from coremltools.converters.mil.frontend.torch.ops import _get_kwinputs
    from coremltools.converters.mil.frontend.torch.utils import NUM_TO_DTYPE_STRING
    from coremltools.converters.mil.mil.types import builtin_to_string, nptype_from_builtin, string_to_builtin

    @register_torch_op(override=True)
    def new_ones(context, node):  # type: ignore[no-untyped-def]
        inputs = _get_inputs(context, node, min_expected=2)
        x, size = inputs[0], inputs[1]
        positional = inputs[2] if len(inputs) > 2 else None    # TorchScript: (self, size, dtype, ...)
        dtype = _get_kwinputs(context, node, "dtype", default=[positional])[0]
        name = NUM_TO_DTYPE_STRING[int(dtype.val)] if dtype is not None else builtin_to_string(x.dtype)
        if isinstance(size, (list, tuple)) and all(s.can_be_folded_to_const() for s in size):
            size = mb.const(val=np.array([int(s.val) for s in size], dtype=np.int32))
        if size.can_be_folded_to_const():
            val = np.ones(tuple(int(d) for d in np.asarray(size.val).reshape(-1)),
                          dtype=nptype_from_builtin(string_to_builtin(name)))
            context.add(mb.const(val=val if val.ndim else val.reshape(()).item(), name=node.name))
            return
        if isinstance(size, (list, tuple)):
            size = mb.concat(values=list(size), axis=0)
        ones = mb.fill(shape=size, value=1.0)
        context.add(mb.cast(x=ones, dtype=name, name=node.name) if name != "fp32" else ones, node.name)


def _register_recurrent(registry, register_torch_op):  # type: ignore[no-untyped-def]
    for op, n_out in (("gru", 2), ("lstm", 3)):   # torch: gru -> (output, h_n); lstm -> (output, h_n, c_n)
        translate = registry.name_to_func_mapping[op]

        def fused(context, node, translate=translate, n_out=n_out):  # type: ignore[no-untyped-def]
            if len(node.outputs) == n_out:   # TorchScript: one name per output already
                translate(context, node)
                return
            named = copy.copy(node)
            named.outputs = [f"{node.name}_out{i}" for i in range(n_out)]
            translate(context, named)
            context.add(tuple(context[o] for o in named.outputs), node.name)

        fused.__name__ = f"{op}_input"
        register_torch_op(fused, torch_alias=[f"{op}.input"], override=True)
