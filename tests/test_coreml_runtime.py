"""runtimes/coreml.py: the Linux SKIPPED path for real, the macOS path with a test double."""

from __future__ import annotations

import sys
import types
from typing import Any

import numpy as np
import pytest

from edgeship.runtimes.base import RuntimeLoadError, RuntimeUnavailable, available, get_runtime
from edgeship.runtimes.coreml import CoreMLRuntime

MANIFEST = {"inputs": [{"name": "image", "shape": [1, 1, 2, 2], "dtype": "float32"}],
            "outputs": [{"name": "logits"}], "recipe": {"compute_units": "CPU_AND_GPU"}}


@pytest.mark.skipif(sys.platform == "darwin", reason="checks the non-macOS path; this machine is Linux")
def test_linux_load_is_unavailable_with_the_reason() -> None:
    assert get_runtime("coreml") is CoreMLRuntime
    ok, why = available("coreml")
    assert not ok and why == "CoreML runs only on macOS (this is Linux); profile on a Mac over ssh"
    with pytest.raises(RuntimeUnavailable, match=r"only on macOS \(this is Linux\)"), CoreMLRuntime("model.mlpackage", MANIFEST):
        pass


class FakeMLModel:
    """TEST DOUBLE for coremltools.models.MLModel: this Linux machine has no Mac to predict on."""

    last: FakeMLModel | None = None

    def __init__(self, path: str, compute_units: object = None) -> None:
        self.path, self.compute_units = path, compute_units
        FakeMLModel.last = self

    def predict(self, feeds: dict[str, Any]) -> dict[str, Any]:
        # extra outputs and fp16 arrays, as real predict() may return
        return {"logits": (np.asarray(feeds["image"]).sum(axis=(2, 3)) * 2.0).astype(np.float16), "extra": 1}


@pytest.fixture
def fake_macos(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pretend to be macOS with the FakeMLModel test double installed as coremltools."""
    fake = types.ModuleType("coremltools")
    fake.__version__ = "9.0-test-double"  # type: ignore[attr-defined]
    fake.models = types.SimpleNamespace(MLModel=FakeMLModel)  # type: ignore[attr-defined]
    fake.ComputeUnit = types.SimpleNamespace(CPU_ONLY="cpu", CPU_AND_GPU="gpu", CPU_AND_NE="ne", ALL="all")  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "coremltools", fake)
    monkeypatch.setattr(sys, "platform", "darwin")


@pytest.mark.parametrize("option,unit", [("cpu_only", "cpu"), ("CPU_AND_GPU", "gpu"), ("cpu_and_ne", "ne"), ("ALL", "all")])
def test_macos_compute_units_and_outputs_with_a_test_double(fake_macos: None, option: str, unit: str) -> None:
    with CoreMLRuntime("m.mlpackage", MANIFEST, options={"compute_units": option}) as rt:
        out = rt.run({"image": np.ones((1, 1, 2, 2), np.float32)})
        assert rt.describe()["compute_units"] == option.upper()
        assert rt.describe()["version"] == "9.0-test-double"
    assert FakeMLModel.last is not None and FakeMLModel.last.compute_units == unit
    assert FakeMLModel.last.path == "m.mlpackage"
    assert list(out) == ["logits"] and out["logits"].dtype == np.float32 and out["logits"].tolist() == [[8.0]]


def test_macos_compute_units_default_to_the_exported_value(fake_macos: None) -> None:
    with CoreMLRuntime("m.mlpackage", MANIFEST):
        assert FakeMLModel.last is not None and FakeMLModel.last.compute_units == "gpu"
    with CoreMLRuntime("m.mlpackage", {**MANIFEST, "recipe": {}}):
        assert FakeMLModel.last.compute_units == "cpu"


def test_macos_bad_compute_units_is_a_load_error(fake_macos: None) -> None:
    with pytest.raises(RuntimeLoadError, match="compute_units 'TPU' is not one of CPU_ONLY"):
        CoreMLRuntime("m.mlpackage", MANIFEST, options={"compute_units": "TPU"}).load()
