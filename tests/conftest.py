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


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def require_tool(name: str, install_cmd: str, path: str | None = None) -> str:
    """The path of executable ``name``; else skip the test saying how to install it.

    Under ``CI=true`` a missing real component is a FAILURE, not a skip: CI must run the
    real thing (``.ci/run`` installs it), so a green build never hides untested code.
    ``path`` is an extra place to look (sshd lives in /usr/sbin, often not on PATH).
    """
    import shutil

    found = shutil.which(name) or (path if path and os.access(path, os.X_OK) else None)
    if found:
        return found
    missing_component(f"'{name}' not found; install it: {install_cmd}")
    raise AssertionError("unreachable")


def missing_component(msg: str) -> None:
    """Skip the test with ``msg`` (how to install the component); under CI=true, fail instead."""
    if in_ci():
        pytest.fail(f"CI=true: {msg} (a required real component may not be skipped in CI)", pytrace=False)
    pytest.skip(msg)


def host_cpu_class() -> str:
    """The host's CPU class (BRIEF contract 2); a minimal /proc/cpuinfo reading until
    runtimes/cpuinfo.py exists."""
    try:
        from edgeship.runtimes.cpuinfo import cpu_features  # type: ignore[import-not-found]
    except ImportError:
        pass
    else:
        f = cpu_features()
        return f"{f.get('cpu_class')} ({f.get('arch')}: {' '.join(f.get('features') or []) or 'no int8-dot flags'})"
    import platform

    flags: set[str] = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("flags", "Features"):
                flags = set(value.split())
                break
    except OSError:
        pass
    machine = platform.machine().lower()
    if machine in ("x86_64", "amd64"):
        cls = ("x86-amx" if "amx_int8" in flags else "x86-vnni" if flags & {"avx512_vnni", "avx_vnni"}
               else "x86-avx2" if "avx2" in flags else "unknown")
        relevant = {"avx2", "avx512bw", "avx512_vnni", "avx_vnni", "amx_int8"}
    elif machine in ("aarch64", "arm64"):
        cls = "arm64-i8mm" if "i8mm" in flags else "arm64-dotprod" if "asimddp" in flags else "arm64"
        relevant = {"asimddp", "i8mm", "sve"}
    else:
        cls, relevant = "unknown", set()
    return f"{cls} ({machine}: {' '.join(sorted(flags & relevant)) or 'no int8-dot flags'})"


def pytest_report_header(config: pytest.Config) -> str:
    # INT8 numerics and speed depend on the integer kernels of this CPU: say which it is
    return f"edgeship host CPU class: {host_cpu_class()}" + ("; CI=true: missing real components fail" if in_ci() else "")


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


def exported_targets() -> dict[str, Any]:
    """The demo's ``[targets]`` without coreml: what the test projects export. The gate judges
    every artifact the config promises, so a project configures only the targets it exports."""
    import tomllib

    targets = tomllib.loads((ROOT / "edgeship.toml").read_text())["targets"]
    return {t: v for t, v in targets.items() if t != "coreml"}


# the demo's [targets.coreml] table, which cli_project drops (see exported_targets)
COREML_TABLE = '\n[targets.coreml]\nprecisions = ["fp32", "fp16", "int8", "int8-weight"]\n'


@pytest.fixture(scope="session")
def demo_project(tmp_path_factory: pytest.TempPathFactory):
    """The demo exported once per session to every onnx and tflite precision, evaluated.

    Returns (config, manifests). Tests that write results or reports into its build dir
    must use their own config copy (``project_copy``) to stay independent. Its config
    promises only onnx and tflite (``exported_targets``).
    """
    from edgeship.exporting.pipeline import export
    from edgeship.measure.evaluate import evaluate
    from edgeship.types import Target

    cfg = make_config(tmp_path_factory.mktemp("demo"), profile=FAST_PROFILE, targets=exported_targets())
    manifests = export(cfg, (Target.ONNX, Target.TFLITE))
    evaluate(cfg)
    return cfg, manifests


def project_copy(tmp: Path, cfg, **overrides: Any):
    """A config over a copy of ``cfg``'s build dir (artifacts, eval), with overrides."""
    import shutil

    shutil.copytree(cfg.build, tmp / "build", dirs_exist_ok=True)
    shutil.rmtree(tmp / "build" / "results", ignore_errors=True)
    shutil.rmtree(tmp / "build" / "reports" / "report.json", ignore_errors=True)
    return make_config(tmp, **{"profile": FAST_PROFILE, "targets": exported_targets(), **overrides})


FAST_PROFILE_TOML = {"min_runs = 100\nmin_seconds = 1.0": "min_runs = 64\nmin_seconds = 0.05\nwarmup_seconds = 0.05\ntimeout_s = 30\nrounds = 2"}


def cli_project(tmp: Path, replace: dict[str, str] | None = None, append: str = "", fast: bool = True) -> Path:
    """Copy the demo edgeship.toml into ``tmp`` (edited by string replacement) for CLI tests."""
    text = (ROOT / "edgeship.toml").read_text()
    if fast:
        replace = {**FAST_PROFILE_TOML, **(replace or {})}
    for old, new in (replace or {}).items():
        assert old in text, old
        text = text.replace(old, new)
    if fast:   # the test projects export onnx and tflite: configure only those (exported_targets)
        text = text.replace(COREML_TABLE, "\n")
    path = tmp / "edgeship.toml"
    path.write_text(text + append)
    return path


@pytest.fixture(scope="session")
def profiled(demo_project, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory whose build/ holds the demo's artifacts, eval.json and local results."""
    from edgeship.measure.profile import profile

    root = tmp_path_factory.mktemp("profiled")
    cfg = project_copy(root, demo_project[0])
    profile(cfg, "local")
    return root


def sigint_as_from_a_terminal(argv: list[str]) -> list[str]:
    """``argv`` run with SIGINT at its default disposition, for a child a test will Ctrl-C.

    A shell without job control starts background commands with SIGINT ignored (bash does for
    every ``cmd &`` in a script, CI runners' shells among them), and Python keeps an ignored
    SIGINT it inherits instead of installing its KeyboardInterrupt handler; so does every
    child. A test suite started that way once made the Ctrl-C tests see exit 0: the test then
    measured how pytest was launched, not edgeship. So the child first resets SIGINT and then
    execs ``argv`` (a default disposition survives exec; a ``preexec_fn`` would do the same
    but is unsafe in a process with threads), getting what a terminal's foreground process has.
    """
    import sys

    reset = "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.execvp(sys.argv[1], sys.argv[1:])"
    return [sys.executable, "-c", reset, *argv]


@pytest.fixture
def sigint_raises() -> Any:
    """For an in-process Ctrl-C test: SIGINT raises KeyboardInterrupt during the test (even when
    pytest itself was started with it ignored; see ``sigint_as_from_a_terminal``), restored after."""
    import signal

    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)


@pytest.fixture(autouse=True)
def _sigint_disposition_is_restored(request: pytest.FixtureRequest) -> Any:
    """Keep SIGINT as it was before each test.

    A library called in-process by one test may leave SIGINT ignored (SIG_IGN) or handled by
    something that does not raise; an ignored SIGINT is then inherited by every process the
    later tests spawn. The warning names the test that changed it. (A full run once saw the
    Ctrl-C tests fail; the cause was a pytest started with SIGINT ignored, which
    ``sigint_as_from_a_terminal`` and ``sigint_raises`` now make irrelevant.)
    """
    import signal
    import warnings

    before = signal.getsignal(signal.SIGINT)
    yield
    after = signal.getsignal(signal.SIGINT)
    if after is not before:
        signal.signal(signal.SIGINT, before)
        warnings.warn(f"{request.node.nodeid} left SIGINT as {after!r}; restored", stacklevel=1)
