"""Tests are built from the registries: a registered backend without a test module fails."""

from __future__ import annotations

from pathlib import Path

from edgeship.exporters.base import EXPORTERS

TESTS = Path(__file__).parent
RUNTIMES = TESTS.parent / "runtimes"
# runtimes/ modules that are infrastructure, not a runtime backend
NOT_BACKENDS = {"__init__", "base", "runner", "memory", "cpuinfo"}   # cpuinfo: tests/test_cpuclass.py


def _has_test(name: str) -> bool:
    return any((TESTS / f"test_{n}.py").is_file() for n in (name, f"{name}_runtime"))


def test_every_exporter_has_a_test_module() -> None:
    names = EXPORTERS.names()
    assert "onnx" in names
    missing = [n for n in names if not _has_test(n)]
    assert not missing, f"registered exporters without tests/test_<name>.py: {missing}"


def test_every_runtime_module_has_a_test_module() -> None:
    mods = sorted(p.stem for p in RUNTIMES.glob("*.py") if p.stem not in NOT_BACKENDS)
    assert "onnxruntime" in mods
    # the onnxruntime runtime is exercised by test_onnx.py / test_runtimes.py
    aliases = {"onnxruntime": "onnx", "litert": "tflite"}
    missing = [m for m in mods if not (_has_test(m) or _has_test(aliases.get(m, m)))]
    assert not missing, f"runtimes/ modules without a test module: {missing}"


def test_coverage_check_detects_a_missing_test() -> None:
    assert not _has_test("no_such_backend")
