"""The runner and profile on the local device: real onnxruntime and LiteRT, bad input."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from edgeship.cli import main
from edgeship.errors import ArtifactError, DeviceError, RuntimeFailure
from edgeship.profile import profile, profile_artifact
from edgeship.selection import find_artifacts
from edgeship.types import Target
from tests.conftest import FAST_PROFILE, cli_project, project_copy


@pytest.fixture
def project(demo_project, tmp_path: Path):
    cfg, _ = demo_project
    return project_copy(tmp_path, cfg)


def test_profile_local_writes_results(project) -> None:
    results = profile(project, "local", (Target.ONNX, Target.TFLITE), None)
    assert {r["artifact"]["name"] for r in results} >= {"onnx-fp32", "onnx-int8", "tflite-int8"}
    for r in results:
        assert r["schema"] == "edgeship.result/1" and r["status"] == "ok"
        samples = r["timing"]["samples_ns"]
        assert len(samples) >= FAST_PROFILE["min_runs"] and min(samples) > 0
        assert r["timing"]["warmup_runs"] >= FAST_PROFILE["warmup_runs"]
        mem = r["memory"]
        assert mem["method"] == "VmHWM" and mem["init_peak_kb"] > mem["baseline_kb"] > 0
        assert mem["hwm_reset"] is True and mem["steady_peak_kb"] > 0 and mem["rss_anon_kb"] > 0
        assert r["env"]["cpu"] and r["env"]["cpu_count"] >= 1
        assert r["runtime"]["threads"] == 1
        saved = project.build / "results" / "local" / f"{r['artifact']['name']}.json"
        assert json.loads(saved.read_text())["artifact"] == r["artifact"]
    assert any(r["runtime"]["name"] == "litert" and "XNNPACK" in r["runtime"]["delegate"] for r in results)


def test_profile_cli_table(project, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(project.root)
    cli_project(project.root)
    code = main(["profile", "--target", "onnx", "--precision", "int8"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "onnx-int8" in out and "p90 ms" in out and "mem steady MB" in out


def _ref(cfg, name: str):
    return next(r for r in find_artifacts(cfg) if r.name == name)


def test_sha_mismatch_is_refused_with_no_result(project, capsys: pytest.CaptureFixture[str]) -> None:
    model = project.artifacts_dir / "onnx-fp32" / "model.onnx"
    data = bytearray(model.read_bytes())
    data[-10] ^= 0xFF
    model.write_bytes(bytes(data))
    code = main(["--config", str(_write_cfg(project)), "profile", "--target", "onnx", "--precision", "fp32"])
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2 and "sha256 does not match" in line and "model.onnx" in line
    assert not (project.build / "results" / "local" / "onnx-fp32.json").exists()


def _write_cfg(cfg) -> Path:
    """The demo toml for the CLI, next to (and so using) the test's build dir."""
    return cli_project(cfg.root)


def test_corrupt_artifact_with_matching_manifest(project) -> None:
    """Garbage model bytes whose checksum was re-recorded: the runtime cannot load it."""
    from edgeship.manifest import file_table, read_manifest

    d = project.artifacts_dir / "onnx-fp32"
    (d / "model.onnx").write_bytes(b"\x08\x07garbage" * 100)
    m = read_manifest(d, verify=False)
    import dataclasses

    dataclasses.replace(m, files=file_table(d)).write(d)
    from edgeship.devices.local import LocalDevice

    with LocalDevice() as dev, pytest.raises(ArtifactError, match="cannot load"):
        profile_artifact(project, dev, _ref(project, "onnx-fp32"))
    assert not (project.build / "results").exists()


@pytest.mark.parametrize("bad", ["shape", "dtype"])
def test_inputs_with_wrong_shape_or_dtype(project, bad: str) -> None:
    from edgeship.devices.local import LocalDevice

    x = np.zeros((1, 1, 8, 8), np.float32)
    inputs = {"image": np.zeros((1, 1, 8, 9), np.float32) if bad == "shape" else x.astype(np.float64)}
    with LocalDevice() as dev, pytest.raises(ArtifactError, match=f"input 'image' has {bad}"):
        profile_artifact(project, dev, _ref(project, "onnx-int8"), inputs=inputs)


def _fake_python(tmp: Path, body: str) -> str:
    script = tmp / "fake-python"
    script.write_text(f"#!{sys.executable}\nimport sys, time\n{body}\n")
    script.chmod(0o755)
    return str(script)


def test_runner_that_crashes(demo_project, tmp_path: Path) -> None:
    cfg = project_copy(tmp_path, demo_project[0], devices={"crashy": {"kind": "local", "python": _fake_python(
        tmp_path, "sys.stderr.write('Segmentation fault\\n'); sys.exit(139)")}})
    with pytest.raises(DeviceError, match=r"device 'crashy', artifact onnx-fp32: the runner crashed \(Segmentation fault"):
        profile(cfg, "crashy", (Target.ONNX,))
    assert not (cfg.build / "results" / "crashy").exists()


def test_runner_that_hangs_times_out(demo_project, tmp_path: Path) -> None:
    prof = dict(FAST_PROFILE, timeout_s=2.0)
    cfg = project_copy(tmp_path, demo_project[0], profile=prof, devices={"stuck": {"kind": "local", "python": _fake_python(
        tmp_path, "time.sleep(60)")}})
    with pytest.raises(DeviceError, match=r"device 'stuck'.*timed out after 2 s"):
        profile(cfg, "stuck", (Target.ONNX,))
    assert not (cfg.build / "results" / "stuck").exists()


def test_runner_exit_codes_directly(project, tmp_path: Path) -> None:
    """The standalone runner: bad inputs exit 3 and write nothing."""
    import subprocess

    from edgeship.bundle import RUNNER_PACKAGE, write_runner_package

    write_runner_package(tmp_path, "onnxruntime")
    np.savez(tmp_path / "in.npz", image=np.zeros((2, 1, 8, 8), np.float32))
    art = project.artifacts_dir / "onnx-fp32"
    run = subprocess.run([sys.executable, "-m", f"{RUNNER_PACKAGE}.runner", "--artifact", str(art), "--inputs",
                          str(tmp_path / "in.npz"), "--out", str(tmp_path / "r.json")], cwd=tmp_path,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 3 and "has shape [2, 1, 8, 8]" in run.stderr
    assert not (tmp_path / "r.json").exists()


def test_runner_package_is_standalone(tmp_path: Path) -> None:
    """The pushed package imports neither edgeship nor torch."""
    import subprocess

    from edgeship.bundle import RUNNER_PACKAGE, write_runner_package

    write_runner_package(tmp_path, "litert")
    code = (f"import sys; import {RUNNER_PACKAGE}.runner, {RUNNER_PACKAGE}.litert; "
            "bad=[m for m in sys.modules if m.split('.')[0] in ('edgeship','torch')]; print(bad)")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_timed_loop_with_fake_clock() -> None:
    """min_runs, min_seconds, max_runs and max_seconds bound the loop (no real timing)."""
    from edgeship.runtimes.runner import timed_loop

    class FakeClock:
        def __init__(self, step: int) -> None:
            self.t, self.step = 0, step

        def __call__(self) -> int:
            self.t += self.step
            return self.t

    class Rt:
        def invoke(self, _p: object) -> None:
            pass

    # 1 ms per clock tick: 2 ticks per run -> 2 ms per sample
    assert len(timed_loop(Rt(), None, 10, 0.0, 10.0, clock=FakeClock(1_000_000))) == 10
    assert len(timed_loop(Rt(), None, 10, 0.1, 10.0, clock=FakeClock(1_000_000))) == 50     # 100 ms / 2 ms
    assert len(timed_loop(Rt(), None, 10, 10.0, 10.0, max_runs=20, clock=FakeClock(1_000_000))) == 20
    assert len(timed_loop(Rt(), None, 10**9, 0.0, 0.01, clock=FakeClock(1_000_000))) == 5    # max_seconds cap
    assert set(timed_loop(Rt(), None, 3, 0.0, 1.0, clock=FakeClock(1_000_000))) == {1_000_000}
