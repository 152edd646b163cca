"""Give an exported ONNX graph the configured input/output names without collisions.

torch's exporter names internal values after the aten op that produced them (``embedding``,
``gelu``, ...), and renaming the graph I/O to the configured names afterwards can give two
values one name ("Duplicate definition of name (embedding)", an invalid model). So the graph
is exported with torch's own unique names, every internal value that holds one of the
configured names is renamed out of the way first, and only then are the I/O values named.
"""

from __future__ import annotations

import ast
from collections.abc import Sequence
from typing import Any


def name_io(model: Any, inputs: Sequence[str], outputs: Sequence[str]) -> dict[str, str]:
    """Rename ``model``'s (an onnx_ir.Model) graph inputs/outputs in place; returns internal renames."""
    import onnx_ir as ir

    graph = model.graph
    wanted = set(inputs) | set(outputs)
    io_values = {id(v) for v in list(graph.inputs) + list(graph.outputs)}
    values: list[Any] = list(graph.inputs) + list(graph.initializers.values())
    for node in graph.all_nodes():
        values.extend(node.outputs)
    taken = {v.name for v in values if v.name}
    renamed: dict[str, str] = {}
    for v in values:
        if v.name in wanted and id(v) not in io_values:
            new = _fresh(f"{v.name}_internal", taken)
            renamed[v.name] = new
            v.name = new
    for v, name in zip(graph.inputs, inputs):
        v.name = name
    # an output that is also an input, or one value returned twice, gets its own Identity
    seen: set[int] = {id(v) for v in graph.inputs}
    for i, name in enumerate(outputs):
        v = graph.outputs[i]
        if id(v) in seen:
            node = ir.node("Identity", [v], name=_fresh(f"identity_{name}", taken))
            graph.append(node)
            v = node.outputs[0]
            graph.outputs[i] = v
        seen.add(id(v))
        v.name = name
    return renamed


def _fresh(base: str, taken: set[str]) -> str:
    name, i = base, 1
    while name in taken:
        i += 1
        name = f"{base}_{i}"
    taken.add(name)
    return name


def name_nodes(path: Any) -> int:
    """Give every unnamed node of the ONNX file at ``path`` a stable name, in place; returns how many.

    onnxruntime's graph optimizations (quant_pre_process) emit fused nodes without a name, and
    the quantizer's ``nodes_to_exclude`` matches by name: one empty id would keep every unnamed
    node float while the manifest lists ``""``. The name is the op type and its place among the
    unnamed nodes of that type (``HardSigmoid_unnamed_3``), the same on every build of the model.
    """
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    nodes = list(model.graph.node)
    taken = {n.name for n in nodes if n.name}
    count: dict[str, int] = {}
    named = 0
    for n in nodes:
        if n.name:
            continue
        k = count[n.op_type] = count.get(n.op_type, -1) + 1
        n.name = _fresh(f"{n.op_type}_unnamed_{k}", taken)
        named += 1
    if named:
        onnx.save(model, str(path))
    return named


def torch_module(node: Any) -> str | None:
    """The PyTorch module a node came from: torch.onnx (dynamo) records its name scopes."""
    if node is None:
        return None
    for p in node.metadata_props:
        if p.key == "pkg.torch.onnx.name_scopes":
            try:
                scopes = [s for s in ast.literal_eval(p.value) if s]
            except (ValueError, SyntaxError):
                return None
            # each scope is a full module path ("body", "body.6"); the last one is the aten op
            return scopes[-2] if len(scopes) >= 2 else None
    return None
