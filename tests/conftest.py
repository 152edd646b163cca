"""Shared fixtures: configs for the demo and the tiny models, each with a private build dir."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))   # so "tests.models:tiny_encoder" resolves in factories

# The demo's trained weights are cached once for the whole suite (and across runs).
os.environ.setdefault("EDGESHIP_CACHE_DIR", str(ROOT / "build" / "cache"))


def make_config(tmp: Path, **overrides: Any):
    """A Config built from the demo edgeship.toml with its build dir under ``tmp``."""
    import tomllib

    from edgeship.config import parse_config

    data = tomllib.loads((ROOT / "edgeship.toml").read_text())
    for key, value in overrides.items():
        data[key] = value
    data["build_dir"] = str(tmp / "build")
    path = tmp / "edgeship.toml"
    return parse_config(data, source=str(path), path=path)


def tiny_config(tmp: Path, name: str, **overrides: Any):
    from tests.models import TINY_MODELS

    m = TINY_MODELS[name]
    model = {
        "name": m.name, "factory": m.factory, "outputs": list(m.outputs),
        "inputs": [s.model_dump(exclude_none=True) for s in m.inputs],
    }
    data = {"calibration": m.calibration, "calibration_samples": 16}
    return make_config(tmp, model=model, data=data, **overrides)


@pytest.fixture
def demo_config(tmp_path: Path):
    return make_config(tmp_path)


@pytest.fixture(scope="session")
def demo_onnx(tmp_path_factory: pytest.TempPathFactory):
    """The demo exported once per session to onnx fp32 and int8: (config, manifests)."""
    from edgeship.pipeline import export
    from edgeship.types import Precision, Target

    cfg = make_config(tmp_path_factory.mktemp("demo_onnx"))
    manifests = export(cfg, (Target.ONNX,), (Precision.FP32, Precision.INT8))
    return cfg, manifests
