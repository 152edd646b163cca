"""The runtime contract (runtimes/base.py) and the ONNX Runtime backend on a real artifact."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgeship.runtimes import base
from edgeship.runtimes.base import (
    RuntimeLoadError,
    RuntimeRunError,
    RuntimeUnavailable,
    get_runtime,
)
from tests.test_runner import make_onnx_artifact

# Where each runtime module is exercised on real artifacts; a new runtime without an entry fails.
TESTED_IN = {"onnxruntime": "tests/test_runtimes.py", "litert": "tests/test_tflite.py",
             "coreml": "tests/test_coreml.py"}


def test_every_runtime_module_has_tests() -> None:
    from edgeship.runtimes.runner import runtime_modules

    root = Path(__file__).resolve().parents[1]
    for name in runtime_modules():
        assert name in TESTED_IN, f"runtimes/{name}.py has no tests: add them and list them in TESTED_IN"
        assert (root / TESTED_IN[name]).is_file()


def test_unknown_runtime_is_unavailable_not_a_crash() -> None:
    with pytest.raises(RuntimeUnavailable, match="unknown runtime 'tensorrt'"):
        get_runtime("tensorrt")
    assert base.available("tensorrt") == (False, "unknown runtime 'tensorrt'")
    assert base.available("onnxruntime") == (True, "")


def test_register_rejects_a_second_class_under_a_taken_name() -> None:
    with pytest.raises(ValueError, match="'onnxruntime' is already registered"):
        base.register("onnxruntime")(type("Other", (base.Runtime,), {}))


def test_quantize_dequantize_with_the_tensors_parameters() -> None:
    spec = {"name": "x", "dtype": "int8", "quantization": {"scale": 0.5, "zero_point": -3}}
    x = np.array([-100.0, -1.0, 0.0, 0.74, 1.0, 100.0], np.float32)
    q = base.quantize(x, spec)
    assert q.dtype == np.int8 and q.tolist() == [-128, -5, -3, -2, -1, 127]   # clipped at the ends
    back = base.dequantize(q, spec)
    assert back.dtype == np.float32 and np.allclose(back[1:5], [-1.0, 0.0, 0.5, 1.0])
    assert base.dequantize(np.ones(2, np.float16), {}).dtype == np.float32
    with pytest.raises(RuntimeRunError, match="input 'ids' is float32, the artifact expects int64"):
        base.quantize(np.zeros(2, np.float32), {"name": "ids", "dtype": "int64"})


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_onnx_artifact(tmp_path_factory.mktemp("rt") / "artifact", dim=16)


def _manifest(artifact: Path) -> dict:
    import json

    return json.loads((artifact / "manifest.json").read_text())


def test_onnxruntime_runs_the_artifact(artifact: Path) -> None:
    cls = get_runtime("onnxruntime")
    m = _manifest(artifact)
    x = np.random.default_rng(1).standard_normal((1, 16)).astype(np.float32)
    w = np.random.default_rng(0).standard_normal((16, 16)).astype(np.float32)
    with cls(str(artifact / "model.onnx"), m, threads=2, options={"graph_optimization_level": "disabled"}) as rt:
        out = rt.run({"x": x})
        prepared = rt.prepare({"x": x})
        again = rt.finish(rt.invoke(prepared))
        d = rt.describe()
    assert list(out) == ["y"] and np.allclose(out["y"], np.maximum(x @ w, 0), atol=1e-5)
    assert np.array_equal(out["y"], again["y"])
    assert d["name"] == "onnxruntime" and d["threads"] == 2 and d["providers"] == ["CPUExecutionProvider"]
    assert d["graph_optimization_level"] == "disabled"
    import onnxruntime

    assert cls.version() == onnxruntime.__version__


def test_onnxruntime_wrong_inputs_raise_run_errors(artifact: Path) -> None:
    with get_runtime("onnxruntime")(str(artifact / "model.onnx"), _manifest(artifact)) as rt:
        with pytest.raises(RuntimeRunError, match=r"input 'x' has shape \[2, 16\], the artifact expects \[1, 16\]"):
            rt.run({"x": np.zeros((2, 16), np.float32)})
        with pytest.raises(RuntimeRunError, match=r"missing input\(s\) \['x'\]"):
            rt.run({"z": np.zeros((1, 16), np.float32)})


def test_onnxruntime_corrupt_model_is_a_load_error(tmp_path: Path, artifact: Path) -> None:
    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"\x00garbage" * 64)
    rt = get_runtime("onnxruntime")(str(bad), _manifest(artifact))
    with pytest.raises(RuntimeLoadError, match=r"onnxruntime: cannot load .*model.onnx"), rt:
        pass


def py38_problems(source: str, name: str) -> list[str]:
    """What keeps ``source`` from running on Python 3.8 or from standing alone (no edgeship/torch)."""
    import ast

    tree = ast.parse(source, name, feature_version=(3, 8))
    future = any(isinstance(n, ast.ImportFrom) and n.module == "__future__" for n in tree.body)
    out = []
    for node in ast.walk(tree):
        mods = [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module else []
        mods += [a.name for a in node.names] if isinstance(node, ast.Import) else []
        out += [f"{name}:{node.lineno}: imports {m}" for m in mods if m.split(".")[0] in ("edgeship", "torch")]
        if isinstance(node, ast.Attribute) and node.attr in ("removeprefix", "removesuffix"):
            out.append(f"{name}:{node.lineno}: str.{node.attr} is Python 3.9+")
        notes = []
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            notes = [a.annotation for a in node.args.args + node.args.kwonlyargs if a.annotation]
            notes += [node.returns] if node.returns else []
        elif isinstance(node, ast.AnnAssign):
            notes = [node.annotation]
        for sub in (s for n in ([] if future else notes) for s in ast.walk(n)):
            if isinstance(sub, ast.Subscript) and isinstance(sub.value, ast.Name) and \
                    sub.value.id in ("list", "dict", "tuple", "set", "type"):
                out.append(f"{name}:{sub.lineno}: {sub.value.id}[...] in an annotation is Python 3.9+")
            if isinstance(sub, ast.BinOp) and isinstance(sub.op, ast.BitOr):
                out.append(f"{name}:{sub.lineno}: 'X | Y' in an annotation is Python 3.10+")
    return out


def test_runtimes_package_is_standalone_python38() -> None:
    """Boards run old Pythons and have no edgeship: every runtimes/ module must parse and import there."""
    bad = "import torch\ndef f(x: list[int]) -> int | None:\n    return 'a'.removeprefix('b')\n"
    assert len(py38_problems(bad, "bad.py")) == 4
    with pytest.raises(SyntaxError):
        py38_problems("if (n := 1):\n    pass\nmatch n:\n    case 1: pass\n", "walrus_ok_match_not.py")
    root = Path(__file__).resolve().parents[1] / "runtimes"
    for path in sorted(root.glob("*.py")):
        assert py38_problems(path.read_text(), path.name) == []
