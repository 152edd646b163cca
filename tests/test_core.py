"""Core plumbing: atomic writes, manifests, registries, lazy imports, the CLI's start-up."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from edgeship.artifact.atomic import atomic_directory, write_json_atomic
from edgeship.artifact.manifest import Manifest, TensorInfo, file_table, read_manifest
from edgeship.artifact.selection import parse_precisions, parse_targets
from edgeship.errors import ArtifactError, MissingDependency, UnknownNameError, UsageError
from edgeship.lazy import require
from edgeship.registry import Registry
from edgeship.types import Precision, Target


def test_atomic_directory_failure_leaves_old_artifact_untouched(tmp_path: Path) -> None:
    final = tmp_path / "onnx-int8"
    with atomic_directory(final) as d:
        (d / "model.onnx").write_text("v1")
    with pytest.raises(RuntimeError), atomic_directory(final) as d:
        (d / "model.onnx").write_text("half-written v2")
        raise RuntimeError("conversion crashed")
    assert (final / "model.onnx").read_text() == "v1"
    # no temp dirs left: only the link and the one version it points to
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["onnx-int8", os.readlink(final)])


def test_atomic_directory_replaces_whole(tmp_path: Path) -> None:
    final = tmp_path / "a"
    with atomic_directory(final) as d:
        (d / "old.txt").write_text("x")
    with atomic_directory(final) as d:
        (d / "new.txt").write_text("y")
    assert sorted(p.name for p in final.iterdir()) == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["a", os.readlink(final)])


def test_write_json_atomic_leaves_no_temp(tmp_path: Path) -> None:
    write_json_atomic(tmp_path / "r.json", {"a": 1})
    assert json.loads((tmp_path / "r.json").read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def _manifest(d: Path) -> Manifest:
    return Manifest(
        model="m", target="onnx", precision="fp32", runtime="onnxruntime", model_file="model.onnx",
        inputs=[TensorInfo("x", [1, 2], "float32")], outputs=[TensorInfo("y", [1, 2], "float32")],
        files=file_table(d), recipe={}, calibration=None, config_digest="", versions={}, created="now",
    )


def test_manifest_roundtrip_and_sha_mismatch(tmp_path: Path) -> None:
    (tmp_path / "model.onnx").write_bytes(b"abc")
    _manifest(tmp_path).write(tmp_path)
    m = read_manifest(tmp_path)
    assert m.size_bytes == 3 and m.files["model.onnx"]["size"] == 3
    (tmp_path / "model.onnx").write_bytes(b"abd")
    with pytest.raises(ArtifactError, match="sha256 does not match"):
        read_manifest(tmp_path)


def test_manifest_missing_is_artifact_error(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="no manifest.json"):
        read_manifest(tmp_path)


def test_registry_rejects_duplicates_and_lists_known_names() -> None:
    reg: Registry[type] = Registry("widget", "edgeship.exporters")
    reg._discovered = True

    @reg.register("a")
    class A:
        pass

    with pytest.raises(ValueError, match="already registered"):
        reg.register("a")(type("B", (), {}))
    with pytest.raises(UnknownNameError, match="unknown widget 'b'; known: a"):
        reg.get("b")


def test_require_maps_only_missing_module() -> None:
    with pytest.raises(MissingDependency, match=r"pip install 'edgeship\[tflite\]'"):
        require("no_such_module_xyz", "tflite")


def test_selection_parsing_suggests() -> None:
    assert parse_targets("onnx,tflite") == (Target.ONNX, Target.TFLITE)
    assert parse_targets("all") is None
    assert parse_precisions("int8-dynamic") == (Precision.INT8_DYNAMIC,)
    with pytest.raises(UsageError, match="did you mean 'tflite'"):
        parse_targets("tflit")


def test_help_is_fast_and_imports_no_backend() -> None:
    code = (
        "import sys, io, contextlib\n"
        "from edgeship.cli import main\n"
        "buf = io.StringIO()\n"
        "with contextlib.redirect_stdout(buf):\n"
        "    try:\n        main(['--help'])\n    except SystemExit:\n        pass\n"
        "heavy = [m for m in ('torch', 'onnx', 'onnxruntime', 'ai_edge_litert', 'litert_torch', 'coremltools',"
        " 'matplotlib', 'sklearn') if m in sys.modules]\n"
        "print(heavy)\n"
        "assert 'export' in buf.getvalue()\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
