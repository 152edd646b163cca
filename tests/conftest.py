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


# rounds = 2: every test profile runs the multi-round path at two process starts per artifact
FAST_PROFILE = {"threads": 1, "warmup_runs": 5, "warmup_seconds": 0.05, "min_runs": 200,
                "min_seconds": 0.1, "max_seconds": 5.0, "timeout_s": 60.0, "rounds": 2}


@pytest.fixture(scope="session")
def demo_project(tmp_path_factory: pytest.TempPathFactory):
    """The demo exported once per session to every onnx and tflite precision, evaluated.

    Returns (config, manifests). Tests that write results or reports into its build dir
    must use their own config copy (``project_copy``) to stay independent.
    """
    from edgeship.evaluation import evaluate
    from edgeship.pipeline import export
    from edgeship.types import Target

    cfg = make_config(tmp_path_factory.mktemp("demo"), profile=FAST_PROFILE)
    manifests = export(cfg, (Target.ONNX, Target.TFLITE))
    evaluate(cfg)
    return cfg, manifests


def project_copy(tmp: Path, cfg, **overrides: Any):
    """A config over a copy of ``cfg``'s build dir (artifacts, eval), with overrides."""
    import shutil

    shutil.copytree(cfg.build, tmp / "build", dirs_exist_ok=True)
    shutil.rmtree(tmp / "build" / "results", ignore_errors=True)
    shutil.rmtree(tmp / "build" / "reports" / "report.json", ignore_errors=True)
    return make_config(tmp, **{"profile": FAST_PROFILE, **overrides})


FAST_PROFILE_TOML = {"min_runs = 100\nmin_seconds = 1.0": "min_runs = 64\nmin_seconds = 0.05\nwarmup_seconds = 0.05\ntimeout_s = 30\nrounds = 2"}


def cli_project(tmp: Path, replace: dict[str, str] | None = None, append: str = "", fast: bool = True) -> Path:
    """Copy the demo edgeship.toml into ``tmp`` (edited by string replacement) for CLI tests."""
    text = (ROOT / "edgeship.toml").read_text()
    if fast:
        replace = {**FAST_PROFILE_TOML, **(replace or {})}
    for old, new in (replace or {}).items():
        assert old in text, old
        text = text.replace(old, new)
    path = tmp / "edgeship.toml"
    path.write_text(text + append)
    return path


@pytest.fixture(scope="session")
def profiled(demo_project, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory whose build/ holds the demo's artifacts, eval.json and local results."""
    from edgeship.profiling import profile

    root = tmp_path_factory.mktemp("profiled")
    cfg = project_copy(root, demo_project[0])
    profile(cfg, "local")
    return root
