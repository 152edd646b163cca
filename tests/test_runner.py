"""The standalone runner as a device runs it: ``python -m edgeship_runner.runner`` on a real
ONNX artifact with the real onnxruntime, in a fresh interpreter, from a copied package."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgeship.artifact.runner_files import RUNNER_PACKAGE, write_runner_package

FAST = ["--warmup-runs", "3", "--warmup-seconds", "0.02", "--min-runs", "150", "--min-seconds", "0.05",
        "--max-seconds", "10"]


def make_onnx_artifact(dest: Path, dim: int = 64, runtime: str = "onnxruntime") -> Path:
    """A tiny real ONNX artifact (MatMul + Relu) with an edgeship manifest, no torch needed."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from edgeship.artifact.manifest import Manifest, TensorInfo, file_table

    w = np.random.default_rng(0).standard_normal((dim, dim)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Relu", ["h"], ["y"])], "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, dim])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, dim])],
        [numpy_helper.from_array(w, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    dest.mkdir(parents=True)
    onnx.save(model, str(dest / "model.onnx"))
    Manifest(
        model="tiny", target="onnx", precision="fp32", runtime=runtime, model_file="model.onnx",
        inputs=[TensorInfo("x", [1, dim], "float32")], outputs=[TensorInfo("y", [1, dim], "float32")],
        files=file_table(dest), recipe={}, calibration=None, config_digest="test", versions={},
        created="2026-01-01T00:00:00+00:00",
    ).write(dest)
    return dest


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    make_onnx_artifact(tmp_path / "artifact")
    write_runner_package(tmp_path, "onnxruntime")
    np.savez(tmp_path / "inputs.npz", x=np.linspace(-1, 1, 64, dtype=np.float32)[None])
    return tmp_path


def run_runner(cwd: Path, *extra: str, inputs: str = "inputs.npz", artifact: str = "artifact",
               timeout: float = 60) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", f"{RUNNER_PACKAGE}.runner", "--artifact", artifact, "--inputs", inputs,
            "--out", "result.json", *extra]
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False, timeout=timeout)


def test_runner_measures_a_real_onnx_artifact(bundle: Path) -> None:
    run = run_runner(bundle, *FAST, "--outputs", "outputs.npz")
    assert run.returncode == 0, run.stderr
    r = json.loads((bundle / "result.json").read_text())
    assert r["schema"] == "edgeship.result/1" and r["status"] == "ok" and r["skip_reason"] is None
    t = r["timing"]
    assert len(t["samples_ns"]) >= 150 and t["capped"] is False
    assert all(isinstance(s, int) and s > 0 for s in t["samples_ns"])
    assert t["load_ns"] > 0 and t["first_ns"] > 0 and t["warmup_runs"] >= 3
    # measured for at least min_seconds of wall time, but the samples alone cannot exceed it hugely
    assert sum(t["samples_ns"]) < 10e9
    assert r["settings"] == {"threads": 1, "warmup_runs": 3, "warmup_seconds": 0.02, "min_runs": 150,
                             "min_seconds": 0.05, "max_seconds": 10.0, "max_runs": 10000}
    assert r["runtime"]["name"] == "onnxruntime" and r["runtime"]["version"] and r["runtime"]["threads"] == 1
    env = r["env"]
    assert env["cpu"] and env["machine"] and env["python"] == ".".join(map(str, sys.version_info[:3]))
    assert env["cpu_count"] >= 1 and env["hostname"]
    if sys.platform.startswith("linux"):
        m = r["memory"]
        assert m["method"] == "VmHWM" and m["hwm_reset"] is True
        assert 0 < m["baseline_kb"] <= m["init_peak_kb"]
        assert m["steady_peak_kb"] > 0 and m["rss_anon_kb"] > 0 and m["rss_file_kb"] > 0
        # after the reset the steady peak holds no init spike: it cannot exceed init by much
        assert m["steady_peak_kb"] <= m["init_peak_kb"] + 2048
    x = np.linspace(-1, 1, 64, dtype=np.float32)[None]
    w = np.random.default_rng(0).standard_normal((64, 64)).astype(np.float32)
    with np.load(bundle / "outputs.npz") as z:
        np.testing.assert_allclose(z["y"], np.maximum(x @ w, 0), rtol=1e-5, atol=1e-5)


def test_runner_threads_and_runtime_options_recorded(bundle: Path) -> None:
    run = run_runner(bundle, *FAST, "--threads", "2", "--options", '{"graph_optimization_level": "basic"}')
    assert run.returncode == 0, run.stderr
    r = json.loads((bundle / "result.json").read_text())
    assert r["runtime"]["threads"] == 2 and r["settings"]["threads"] == 2
    assert r["runtime"]["graph_optimization_level"] == "basic"


def test_max_seconds_caps_and_is_recorded(bundle: Path) -> None:
    run = run_runner(bundle, "--warmup-runs", "0", "--warmup-seconds", "0", "--min-runs", "100000000",
                     "--max-seconds", "0.2", "--max-runs", "0")
    assert run.returncode == 0, run.stderr
    t = json.loads((bundle / "result.json").read_text())["timing"]
    assert t["capped"] is True and 0 < len(t["samples_ns"]) < 100000000


def _assert_failed(run: subprocess.CompletedProcess[str], code: int, *needles: str, out: Path) -> None:
    lines = run.stderr.strip().splitlines()
    assert run.returncode == code, run.stderr
    assert len(lines) == 1 and lines[0].startswith("edgeship-runner: error: "), run.stderr
    for n in needles:
        assert n in lines[0]
    assert not (out / "result.json").exists()
    assert not list(out.glob(".result.*"))   # no temp file left behind either


def test_sha256_mismatch_exits_3(bundle: Path) -> None:
    model = bundle / "artifact" / "model.onnx"
    data = bytearray(model.read_bytes())
    data[-5] ^= 0x01
    model.write_bytes(bytes(data))
    _assert_failed(run_runner(bundle, *FAST), 3, "model.onnx", "sha256 does not match", out=bundle)


def test_garbage_model_with_matching_manifest_exits_3(bundle: Path) -> None:
    from edgeship.artifact.manifest import MANIFEST, file_table

    art = bundle / "artifact"
    (art / "model.onnx").write_bytes(b"not an onnx model" * 50)
    m = json.loads((art / MANIFEST).read_text())
    m["files"] = file_table(art)
    (art / MANIFEST).write_text(json.dumps(m))
    _assert_failed(run_runner(bundle, *FAST), 3, "cannot load", "model.onnx", out=bundle)


@pytest.mark.parametrize("manifest", ["{not json", '{"runtime": "onnxruntime"}'])
def test_malformed_manifest_exits_3(bundle: Path, manifest: str) -> None:
    (bundle / "artifact" / "manifest.json").write_text(manifest)
    _assert_failed(run_runner(bundle, *FAST), 3, "manifest", out=bundle)


@pytest.mark.parametrize(("array", "needle"), [
    (np.zeros((2, 64), np.float32), "has shape [2, 64], the artifact expects [1, 64]"),
    (np.zeros((1, 64), np.float64), "has dtype float64, the artifact expects float32"),
    (np.zeros((1, 64), np.int32), "has dtype int32"),
])
def test_wrong_inputs_exit_5(bundle: Path, array: np.ndarray, needle: str) -> None:
    np.savez(bundle / "bad.npz", x=array)
    _assert_failed(run_runner(bundle, *FAST, inputs="bad.npz"), 5, "bad.npz", "input 'x'", needle, out=bundle)


def test_missing_input_name_and_unreadable_npz_exit_5(bundle: Path) -> None:
    np.savez(bundle / "bad.npz", image=np.zeros((1, 64), np.float32))
    _assert_failed(run_runner(bundle, *FAST, inputs="bad.npz"), 5, "no array named 'x'", out=bundle)
    (bundle / "junk.npz").write_bytes(b"junk")
    _assert_failed(run_runner(bundle, *FAST, inputs="junk.npz"), 5, "junk.npz", "not a readable .npz", out=bundle)


def test_unavailable_runtime_is_skipped_with_reason(tmp_path: Path) -> None:
    """A runtime module that cannot import its package: status skipped, exit 0."""
    make_onnx_artifact(tmp_path / "artifact", runtime="nosuchrt")
    pkg = write_runner_package(tmp_path, "onnxruntime")
    (pkg / "nosuchrt.py").write_text(
        "from .base import Runtime, RuntimeUnavailable, register\n"
        "@register('nosuchrt')\nclass NoSuch(Runtime):\n"
        "    @classmethod\n    def version(cls):\n"
        "        raise RuntimeUnavailable('nosuchrt needs macOS (this is a test double)')\n")
    np.savez(tmp_path / "inputs.npz", x=np.zeros((1, 64), np.float32))
    run = run_runner(tmp_path, *FAST)
    assert run.returncode == 0, run.stderr
    r = json.loads((tmp_path / "result.json").read_text())
    assert r["status"] == "skipped" and "needs macOS" in r["skip_reason"] and r["timing"] is None


def test_runtime_that_raises_while_running_exits_4(tmp_path: Path) -> None:
    """A backend exception escaping invoke (not ours) still gives one line and exit 4."""
    make_onnx_artifact(tmp_path / "artifact", runtime="boom")
    pkg = write_runner_package(tmp_path, "onnxruntime")
    (pkg / "boom.py").write_text(
        "from .onnxruntime import OnnxRuntime\nfrom .base import register\n"
        "@register('boom')\nclass Boom(OnnxRuntime):\n"
        "    def _invoke(self, prepared):\n        raise MemoryError('arena exhausted\\nsecond line')\n")
    np.savez(tmp_path / "inputs.npz", x=np.zeros((1, 64), np.float32))
    _assert_failed(run_runner(tmp_path, *FAST), 4, "boom failed: MemoryError: arena exhausted", out=tmp_path)


def test_info_lists_runtimes_of_the_package(tmp_path: Path) -> None:
    write_runner_package(tmp_path, None)
    run = subprocess.run([sys.executable, "-m", f"{RUNNER_PACKAGE}.runner", "--info"], cwd=tmp_path,
                         capture_output=True, text=True, check=False, timeout=120)
    assert run.returncode == 0, run.stderr
    info = json.loads(run.stdout)
    assert info["runtimes"]["onnxruntime"]["available"] is True
    import onnxruntime

    assert info["runtimes"]["onnxruntime"]["version"] == onnxruntime.__version__
    assert set(info["runtimes"]) >= {"onnxruntime", "litert"}
    assert info["env"]["cpu_count"] >= 1


def test_info_reports_a_broken_runtime_install(tmp_path: Path) -> None:
    """A runtime whose native library fails to load is reported as broken, not as missing."""
    pkg = write_runner_package(tmp_path, "onnxruntime")
    (pkg / "brokenrt.py").write_text(
        "from .base import Runtime, register\n@register('brokenrt')\nclass Broken(Runtime):\n"
        "    @classmethod\n    def version(cls):\n        raise OSError('libfoo.so: cannot open shared object file')\n")
    run = subprocess.run([sys.executable, "-m", f"{RUNNER_PACKAGE}.runner", "--info"], cwd=tmp_path,
                         capture_output=True, text=True, check=False, timeout=120)
    assert run.returncode == 0, run.stderr
    info = json.loads(run.stdout)["runtimes"]
    assert info["brokenrt"] == {"available": False, "reason": "broken: OSError: libfoo.so: cannot open shared object file"}
    assert info["onnxruntime"]["available"] is True


def test_required_arguments() -> None:
    from edgeship.runtimes.runner import parse_args

    with pytest.raises(SystemExit):
        parse_args(["--artifact", "a"])
    assert parse_args(["--info"]).info is True


def test_exit_codes_match_profile() -> None:
    from edgeship.measure import profile
    from edgeship.runtimes import runner

    assert (runner.EXIT_BAD_ARTIFACT, runner.EXIT_RUNTIME, runner.EXIT_BAD_INPUTS) == (
        profile.EXIT_BAD_ARTIFACT, profile.EXIT_RUNTIME, profile.EXIT_BAD_INPUTS)
    assert runner.SCHEMA == profile.SCHEMA


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


def test_memory_probe_reads_proc_status() -> None:
    from edgeship.runtimes.memory import MemoryProbe

    probe = MemoryProbe()
    if not sys.platform.startswith("linux"):   # macOS: ru_maxrss, not resettable
        assert probe.method == "ru_maxrss" and probe.peak_kb() > 0 and probe.reset_peak() is False
        return
    before = probe.peak_kb()
    block = np.ones(64 * 1024 * 1024 // 8)    # 64 MiB touched
    assert probe.peak_kb() >= before and probe.peak_kb() >= block.nbytes // 1024
    del block
    assert probe.reset_peak() is True
    rss = probe.rss()
    assert rss["rss_anon_kb"] > 0 and rss["rss_file_kb"] > 0
