"""The layers contract: imports run downward only, and no two project files import each other
in a circle, imports inside functions included (docs/architecture.md).

import-linter's graph builder (grimp) walks the ``edgeship/`` folder only, so it never sees
``exporters/``, ``runtimes/``, ``devices/`` and ``calibration/``, which the package-dir mapping
installs as ``edgeship.*``. This test builds the graph itself from the AST of every project file
under the names the files are installed as, which is what Python resolves at run time.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import tomllib

from tests.conftest import ROOT

# highest first; a module may import its own layer (no circles: see below) and any layer below.
# The most specific name decides a module's layer (edgeship.devices.ssh_policy is ground floor,
# the rest of edgeship.devices is not).
LAYERS: list[tuple[str, ...]] = [
    ("edgeship.cli", "edgeship.__main__", "edgeship.commands", "edgeship.api"),
    ("edgeship.cluster",),
    ("edgeship.reports",),
    ("edgeship.gating",),
    ("edgeship.measure",),
    ("edgeship.exporting", "edgeship.exporters", "edgeship.accuracy", "edgeship.compress", "edgeship.demo"),
    ("edgeship.devices",),
    ("edgeship.artifact",),
    ("edgeship.model", "edgeship.calibration"),
    # the ground floor: what config validates against is data, so it sits here too
    ("edgeship.config", "edgeship.devices.board_cpus", "edgeship.devices.ssh_policy", "edgeship.metrics",
     "edgeship.ui"),
    ("edgeship", "edgeship.errors", "edgeship.types", "edgeship.registry", "edgeship.lazy", "edgeship.determinism",
     "edgeship.untrusted"),
]
# the standalone runner pushed to boards: numpy + one runtime, nothing of edgeship
INDEPENDENT = ("edgeship.runtimes",)
MAX_LOOSE_MODULES = 12


def package_dirs() -> dict[str, Path]:
    """Installed package name -> source folder, from pyproject's package-dir mapping."""
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    dirs = {"edgeship": ROOT / "edgeship"}
    for name, folder in cfg.get("package-dir", {}).items():
        if name:
            dirs[name] = ROOT / folder
    return dirs


def project_modules() -> dict[str, Path]:
    dirs = package_dirs()
    mapped = {p.resolve() for n, p in dirs.items() if n != "edgeship"}
    mods: dict[str, Path] = {}
    for pkg, folder in dirs.items():
        for f in sorted(folder.rglob("*.py")):
            if pkg == "edgeship" and any(parent.resolve() in mapped for parent in f.parents):
                continue
            parts = list(f.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            mods[".".join([pkg, *parts])] = f
    return mods


def _resolve(name: str, mods: dict[str, Path]) -> str | None:
    while name:
        if name in mods:
            return name
        name = name.rpartition(".")[0]
    return None


def import_graph() -> dict[str, set[str]]:
    """module -> project modules it imports (top-level and inside functions alike)."""
    mods = project_modules()
    graph: dict[str, set[str]] = {}
    for mod, path in mods.items():
        is_pkg = path.name == "__init__.py"
        out: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    here = mod.split(".") if is_pkg else mod.split(".")[:-1]
                    here = here[: len(here) - (node.level - 1)]
                    base = ".".join(here + ([node.module] if node.module else []))
                # "from pkg import sub" imports the submodule when there is one
                targets = [f"{base}.{a.name}" for a in node.names]
            for t in targets:
                r = _resolve(t, mods)
                if r is not None and r != mod:
                    out.add(r)
        graph[mod] = out
    return graph


def layer_of(mod: str) -> int | None:
    best: tuple[int, int] | None = None   # (specificity, layer)
    for i, members in enumerate(LAYERS):
        for m in members:
            if (mod == m or mod.startswith(m + ".")) and (best is None or len(m) > best[0]):
                best = (len(m), i)
    return None if best is None else best[1]


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                    break
                if w in on:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on.discard(w)
                        comp.append(w)
                        if w == v:
                            break
                    if len(comp) > 1:
                        out.append(sorted(comp))
    return out


def test_every_module_has_a_layer() -> None:
    lost = [m for m in project_modules() if layer_of(m) is None and not m.startswith(INDEPENDENT)]
    assert not lost, f"modules outside the layers contract (add them to LAYERS and docs/architecture.md): {lost}"


def test_no_import_circles() -> None:
    found = cycles(import_graph())
    assert not found, "import circles:\n" + "\n".join(" -> ".join(c) for c in found)


def test_imports_run_downward() -> None:
    bad = []
    for mod, deps in sorted(import_graph().items()):
        if mod.startswith(INDEPENDENT):
            bad += [f"{mod} -> {d} (the runner imports nothing of edgeship)" for d in sorted(deps)
                    if not d.startswith(INDEPENDENT)]
            continue
        here = layer_of(mod)
        for d in sorted(deps):
            there = layer_of(d)
            if d.startswith(INDEPENDENT) or here is None or there is None:
                continue
            if there < here:
                bad.append(f"{mod} (layer {here}) -> {d} (layer {there})")
    assert not bad, "upward imports:\n" + "\n".join(bad)


def test_the_core_is_grouped() -> None:
    loose = sorted(p.name for p in (ROOT / "edgeship").glob("*.py"))
    assert len(loose) <= MAX_LOOSE_MODULES, f"{len(loose)} modules loose in edgeship/: {loose}"


@pytest.mark.parametrize("graph,expected", [
    ({"a": {"b"}, "b": {"a"}, "c": set()}, [["a", "b"]]),
    ({"a": {"b"}, "b": {"c"}, "c": set()}, []),
    ({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}, [["a", "b", "c"]]),
])
def test_the_cycle_finder_finds_cycles(graph: dict[str, set[str]], expected: list[list[str]]) -> None:
    assert cycles(graph) == expected


def test_the_graph_sees_function_level_and_mapped_imports() -> None:
    g = import_graph()
    # exporters/ is installed as edgeship.exporters and must be in the graph (grimp misses it)
    assert "edgeship.exporters.onnx" in g and "edgeship.exporters.base" in g["edgeship.exporters.onnx"]
    # cli imports its progress inside a function
    assert "edgeship.ui.progress" in g["edgeship.cli"]


def test_no_module_shadows_an_api_verb() -> None:
    """``edgeship.export(...)``, ``edgeship.gate(...)``: importing a subpackage of the same name
    would replace the lazily resolved function on the ``edgeship`` module."""
    import edgeship

    names = {m.split(".")[1] for m in project_modules() if m.count(".") >= 1}
    clash = sorted(set(edgeship.__all__) & names)
    assert not clash, f"modules named like API verbs: {clash}"
