"""Emulated boards: the real x86-64 (Haswell) and aarch64 (Cortex-A76) runtimes under qemu-user.

Real parts only: qemu-user-static, the host's python for x86_64, Debian's arm64 python and
PyPI's aarch64 wheels (downloaded once into the suite's cache, build/cache/boards) for arm64.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgeship.errors import ConfigError
from tests.conftest import ROOT, in_ci, make_config, project_copy, require_tool

QEMU_INSTALL = "apt-get install -y qemu-user-static"
EMULATED = {"hw": {"kind": "emulated", "arch": "x86_64", "cpu": "Haswell"},
            "pi5": {"kind": "emulated", "arch": "arm64", "cpu": "cortex-a76"}}


def require_emulation(arch: str) -> None:
    from edgeship.devices.boards import QEMU

    require_tool(QEMU[arch], QEMU_INSTALL)
    require_tool("unshare", "apt-get install -y util-linux")
    # the private /proc/cpuinfo bind mount needs root, or unprivileged user namespaces
    if os.geteuid() != 0 and subprocess.run(["unshare", "--map-root-user", "--mount", "true"],
                                            capture_output=True, check=False).returncode != 0:
        msg = "emulated boards need root or unprivileged user namespaces (unshare --map-root-user --mount)"
        if in_ci():
            pytest.fail(f"CI=true: {msg}")
        pytest.skip(msg)


# ---- config -------------------------------------------------------------------------------

def _cfg(tmp: Path, **device: Any):
    return make_config(tmp, devices={"b": {"kind": "emulated", **device}})


@pytest.mark.parametrize(("arch", "cpu", "why"), [
    ("arm64", "max", "LiteRT INT8 gives wrong results under -cpu max"),
    ("arm64", "a64fx", "not an edge board; reported to die with Illegal instruction in LiteRT"),
    ("arm64", "cortex-a9", "not verified for emulated arm64 boards; use one of cortex-a76, neoverse-n1, cortex-a72"),
    ("x86_64", "Skylake-Server", "not verified for emulated x86_64 boards; use one of Haswell"),
])
def test_refused_cpus_name_the_reason(tmp_path: Path, arch: str, cpu: str, why: str) -> None:
    with pytest.raises(ConfigError) as e:
        _cfg(tmp_path, arch=arch, cpu=cpu)
    msg = str(e.value)
    assert "key 'devices.b.cpu'" in msg and f"'{cpu}'" in msg and why in msg and "\n" not in msg


def test_cli_refused_cpu_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from edgeship.cli import main

    text = (ROOT / "edgeship.toml").read_text() + '\n[devices.pi]\nkind = "emulated"\narch = "arm64"\ncpu = "max"\n'
    (tmp_path / "edgeship.toml").write_text(text)
    code = main(["--config", str(tmp_path / "edgeship.toml"), "devices", "check", "pi"])
    err = capsys.readouterr().err
    assert code == 2 and "cpu 'max' is refused: LiteRT INT8 gives wrong results" in err and "Traceback" not in err


@pytest.mark.parametrize(("arch", "cpu", "cls"), [
    ("arm64", "cortex-a76", "arm64-dotprod"), ("arm64", "neoverse-n1", "arm64-dotprod"),
    ("arm64", "cortex-a72", "arm64"), ("arm64", "cortex-a53", "arm64"),
    ("x86_64", "Haswell", "x86-avx2"), ("x86_64", "EPYC", "x86-avx2"),
])
def test_declared_class_follows_from_the_cpu(tmp_path: Path, arch: str, cpu: str, cls: str) -> None:
    from edgeship.devices.board_cpus import cpuinfo_text

    d = _cfg(tmp_path, arch=arch, cpu=cpu).devices["b"]
    assert d.cpu_class == cls
    text = cpuinfo_text(arch, cpu, 2)
    assert text.count("processor\t:") == 2 and "avx512" not in text and "vnni" not in text
    assert ("asimddp" in text) == (cls == "arm64-dotprod") and ("avx2" in text) == (cls == "x86-avx2")


def test_bad_python_and_unknown_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"devices.b.python.*python 3.11"):
        _cfg(tmp_path, arch="arm64", cpu="cortex-a76", python="3.12")
    with pytest.raises(ConfigError, match=r"unknown key 'devices.b.cpus'; did you mean 'cpu'"):
        _cfg(tmp_path, arch="arm64", cpu="cortex-a76", cpus="x")


def test_setup_of_a_non_emulated_device_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from edgeship.cli import main

    (tmp_path / "edgeship.toml").write_text((ROOT / "edgeship.toml").read_text())
    code = main(["--config", str(tmp_path / "edgeship.toml"), "devices", "setup", "local"])
    assert code == 2 and "only emulated boards have a setup" in capsys.readouterr().err


def test_unbuilt_userland_is_refused_and_a_half_built_one_never_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A killed setup leaves a dir without the completion stamp: the device refuses it."""
    from edgeship.devices import boards
    from edgeship.devices.base import open_device
    from edgeship.errors import DeviceError

    require_emulation("arm64")
    monkeypatch.setenv("EDGESHIP_CACHE_DIR", str(tmp_path / "cache"))
    cfg = make_config(tmp_path, devices=EMULATED)
    root = boards.userland_dir("arm64", "3.11")
    (root / "usr" / "bin").mkdir(parents=True)           # everything but the stamp
    with pytest.raises(DeviceError, match=r"device 'pi5': the arm64 userland is not built .*'edgeship devices setup pi5'"), \
            open_device("pi5", cfg):
        pass


# ---- running the runner under emulation --------------------------------------------------

def run_outputs(dev: Any, cfg: Any, ref: Any, inputs: dict[str, np.ndarray]) -> tuple[list[np.ndarray], dict[str, Any]]:
    """Push ``ref`` with ``inputs`` to an open device, run the runner once, pull outputs and result."""
    from edgeship.artifact.bundle import build_bundle
    from edgeship.measure.profile import runner_argv

    with tempfile.TemporaryDirectory(prefix="emu-") as tmp:
        remote = dev.push(build_bundle(Path(tmp) / "bundle", ref, inputs), f"bundle-{ref.name}")
        run = dev.run(runner_argv(dev, remote, ref, cfg, min_runs=1, min_seconds=0.0, outputs=True),
                      timeout=600, cwd=remote)
        assert run.returncode == 0, run.stderr[-3000:]
        dev.pull(f"{remote}/outputs.npz", Path(tmp) / "outputs.npz")
        dev.pull(f"{remote}/result.json", Path(tmp) / "result.json")
        with np.load(Path(tmp) / "outputs.npz") as npz:
            outs = [np.array(npz[t.name]) for t in ref.manifest.outputs]
        return outs, json.loads((Path(tmp) / "result.json").read_text())


def assert_fp32_match(got: list[np.ndarray], want: list[np.ndarray], name: str, cpu: str) -> None:
    """FP32 on another CPU's kernels: equal up to float32 rounding (summation order and FMA use
    differ between the AVX-512, AVX2 and NEON GEMMs, so bit-identity is not a property of FP32)."""
    for g, w in zip(got, want):
        assert g.dtype == w.dtype == np.float32 and g.shape == w.shape, name
        diff = float(np.max(np.abs(g.astype(np.float64) - w)))
        print(f"{cpu} {name}: bit-identical={np.array_equal(g, w)} max_abs_diff={diff:.3g}")
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5, err_msg=f"{name} on {cpu}")


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def _refs(cfg: Any) -> dict[str, Any]:
    from edgeship.artifact.selection import find_artifacts

    return {r.name: r for r in find_artifacts(cfg)}


@pytest.fixture(scope="module")
def host_outputs(demo_project: Any) -> dict[str, list[np.ndarray]]:
    """The host's own outputs (local device, same runner) for the fp32 and int8 artifacts."""
    from edgeship.devices.local import LocalDevice
    from edgeship.measure.inputs import profiling_inputs

    cfg, _ = demo_project
    inputs = profiling_inputs(cfg)
    refs = _refs(cfg)
    with LocalDevice() as dev:
        return {n: run_outputs(dev, cfg, refs[n], inputs)[0] for n in ("onnx-fp32", "tflite-fp32", "onnx-int8")}


def test_haswell_board_runs_host_python_on_an_avx2_only_cpu(demo_project: Any, host_outputs: Any, tmp_path: Path) -> None:
    """x86-avx2 numerics on any x86 host: FP32 outputs bit-identical to the host's; the CPU the
    runtimes see (CPUID under qemu, and the bind-mounted /proc/cpuinfo) has AVX2 and no AVX-512."""
    from edgeship.devices.base import open_device
    from edgeship.measure.inputs import profiling_inputs

    require_emulation("x86_64")
    demo_cfg, _ = demo_project
    cfg = make_config(tmp_path, devices=EMULATED)
    refs = _refs(demo_cfg)
    inputs = profiling_inputs(demo_cfg)
    probe = ("import sys; from numpy._core._multiarray_umath import __cpu_features__ as f; "
             "print(f['AVX2'], f['AVX512F'], f['AVX512VNNI']); print(open('/proc/cpuinfo').read())")
    with open_device("hw", cfg) as dev:
        run = dev.run([dev.python, "-c", probe], timeout=300)
        assert run.returncode == 0, run.stderr
        cpuid, cpuinfo = run.stdout.split("\n", 1)
        assert cpuid.split() == ["True", "False", "False"]      # what the CPU itself says under qemu
        assert " avx2 " in cpuinfo and "avx512" not in cpuinfo and "qemu-user emulated Haswell" in cpuinfo
        assert "TCG doesn't support" not in run.stderr           # qemu's start-up warnings are filtered
        for name in ("onnx-fp32", "tflite-fp32"):
            outs, result = run_outputs(dev, cfg, refs[name], inputs)
            cpu = result["env"]["cpu"]
            assert result["status"] == "ok" and cpu["model"] == "qemu-user emulated Haswell" and cpu["cpu_class"] == "x86-avx2"
            assert_fp32_match(outs, host_outputs[name], name, "Haswell")
        # u8s8 INT8 saturates in onnxruntime's AVX2 kernels (no VNNI): the board shows what an
        # AVX2 machine would, which the host (VNNI here) cannot
        int8 = refs["onnx-int8"]
        emu = min(cosine(g, w) for g, w in zip(run_outputs(dev, cfg, int8, inputs)[0], host_outputs["onnx-fp32"]))
        host = min(cosine(g, w) for g, w in zip(host_outputs["onnx-int8"], host_outputs["onnx-fp32"]))
        print(f"onnx-int8 cosine vs fp32: host {host:.6f}, Haswell {emu:.6f}")
        flags = Path("/proc/cpuinfo").read_text()
        host_vnni = "avx512_vnni" in flags or " avx_vnni" in flags
        if int8.manifest.recipe.get("activation_type") == "uint8" and host_vnni:
            assert emu < host - 1e-3, (emu, host)
        info = dev.info()
    assert info["kind"] == "emulated" and info["cpu_class"] == "x86-avx2" and info["env"]["machine"] == "x86_64"


@pytest.fixture(scope="module")
def arm64_userland() -> Path:
    """The arm64 userland, built once into the suite's cache (build/cache/boards)."""
    from edgeship.devices.boards import setup_userland

    require_emulation("arm64")
    require_tool("apt-get", "a Debian/Ubuntu host")
    return setup_userland("arm64", "3.11", on_event=lambda m: None)


def test_arm64_setup_is_idempotent(arm64_userland: Path) -> None:
    from edgeship.devices.boards import STAMP, setup_userland

    said: list[str] = []
    stamp = (arm64_userland / STAMP).stat().st_mtime_ns
    assert setup_userland("arm64", "3.11", on_event=said.append) == arm64_userland
    assert said == [f"board userland already built: {arm64_userland}"]
    assert (arm64_userland / STAMP).stat().st_mtime_ns == stamp
    assert (arm64_userland / "usr" / "bin" / "python3.11").is_file()
    assert not list(arm64_userland.parent.glob(f".{arm64_userland.name}.*.tmp"))


def test_cortex_a76_board_numerics(demo_project: Any, host_outputs: Any, arm64_userland: Path, tmp_path: Path) -> None:
    """The real aarch64 onnxruntime and LiteRT: FP32 bit-identical to the host's, INT8 within
    cosine 0.999 of FP32 (dotprod kernels, no u8s8 saturation)."""
    from edgeship.devices.base import open_device
    from edgeship.measure.inputs import profiling_inputs

    demo_cfg, _ = demo_project
    cfg = make_config(tmp_path, devices=EMULATED)
    refs = _refs(demo_cfg)
    inputs = profiling_inputs(demo_cfg)
    measured = {}
    with open_device("pi5", cfg) as dev:
        info = dev.info()
        assert info["env"]["machine"] == "aarch64" and info["cpu_class"] == "arm64-dotprod"
        assert {rt: s["available"] for rt, s in info["runtimes"].items() if rt != "coreml"} == \
            {"litert": True, "onnxruntime": True}
        for name in ("onnx-fp32", "tflite-fp32"):
            outs, result = run_outputs(dev, cfg, refs[name], inputs)
            assert result["env"]["machine"] == "aarch64"
            assert_fp32_match(outs, host_outputs[name], name, "cortex-a76")
        for name, fp32 in (("onnx-int8", "onnx-fp32"), ("tflite-int8", "tflite-fp32")):
            outs, _ = run_outputs(dev, cfg, refs[name], inputs)
            measured[name] = min(cosine(g, w) for g, w in zip(outs, host_outputs[fp32]))
    print("cortex-a76 int8 cosine vs fp32:", measured)
    assert all(c >= 0.999 for c in measured.values()), measured


def test_cortex_a72_board_without_dotprod_int8(demo_project: Any, host_outputs: Any, arm64_userland: Path,
                                               tmp_path: Path) -> None:
    """A Raspberry Pi 4's CPU (ARMv8.0, class arm64): the issue reported "Illegal instruction"
    in LiteRT; with a cpuinfo that matches the model (no asimddp) both runtimes run, and INT8
    stays within cosine 0.999 of FP32."""
    from edgeship.devices.base import open_device
    from edgeship.measure.inputs import profiling_inputs

    demo_cfg, _ = demo_project
    cfg = make_config(tmp_path, devices={"pi4": {"kind": "emulated", "arch": "arm64", "cpu": "cortex-a72"}})
    refs = _refs(demo_cfg)
    inputs = profiling_inputs(demo_cfg)
    with open_device("pi4", cfg) as dev:
        for name, fp32 in (("onnx-int8", "onnx-fp32"), ("tflite-int8", "tflite-fp32")):
            outs, result = run_outputs(dev, cfg, refs[name], inputs)
            c = min(cosine(g, w) for g, w in zip(outs, host_outputs[fp32]))
            print(f"cortex-a72 {name} cosine vs fp32: {c:.6f}")
            assert result["env"]["machine"] == "aarch64" and c >= 0.999, (name, c)


# ---- the gate: numerics count, timings do not ---------------------------------------------

def test_latency_and_memory_budgets_of_an_emulated_board_are_skipped(demo_project: Any, tmp_path: Path) -> None:
    from edgeship.gating.judge import gate
    from edgeship.measure.profile import profile
    from edgeship.types import Precision, Target

    require_emulation("x86_64")
    demo_cfg, _ = demo_project
    budgets = [{"device": "hw", "target": "onnx", "precision": "fp32", "latency_ms": {"p90": 1e6},
                "peak_memory_mb": 1e6, "size_kb": 1e6},
               {"device": "hw", "target": "onnx", "precision": "fp32", "latency_ms": {"p50": 1e6},
                "require": True},
               # INT8 must pay (issue 27): judged from one session's rounds, never on an emulated board
               {"device": "hw", "target": "onnx", "precision": "int8", "min_speedup_vs_fp32": 0.01}]
    cfg = project_copy(tmp_path, demo_cfg, devices=EMULATED, budgets=budgets)
    results = profile(cfg, "hw", (Target.ONNX,), (Precision.FP32, Precision.INT8), min_runs=3, min_seconds=0.0)
    (result,) = [r for r in results if r["artifact"]["precision"] == "fp32"]
    assert result["device"] == {"name": "hw", "kind": "emulated", "emulated": True}
    assert result["timing"]["emulated"] is True and result["memory"]["emulated"] is True
    saved = json.loads((cfg.build / "results" / "hw" / "onnx-fp32.json").read_text())
    assert saved["timing"]["emulated"] is True
    checks = {c.check.name: c for c in gate(cfg, remeasure=lambda d, a: []).checks}
    verdicts = {n: (c.verdict.value, c.detail) for n, c in checks.items()}
    mem = [v for n, v in verdicts.items() if "memory" in n]
    size = [v for n, v in verdicts.items() if "size" in n]
    reason = "emulated device: timing is not representative"
    speedup = [c for c in checks.values() if c.check.metric == "speedup_vs_fp32"]
    assert len(speedup) == 1 and speedup[0].verdict.value == "SKIPPED" and speedup[0].detail == reason, speedup
    lat = [v for n, v in verdicts.items() if "latency" in n and "speedup" not in n]
    assert lat and mem and size, verdicts
    assert (verdicts and all(v[0] != "PASS" for v in lat + mem)), verdicts
    assert sorted(v[0] for v in lat) == ["FAIL", "SKIPPED"] and all(reason in v[1] for v in lat + mem)
    assert mem[0][0] == "SKIPPED" and size[0][0] == "PASS"
    # a baseline comparison never judges an emulated board's latency either
    rep = gate(cfg, remeasure=lambda d, a: [], baseline={"results": [saved]})
    reg = [c for c in rep.checks if c.check.metric == "latency_regression"]
    assert len(reg) == 1 and reg[0].verdict.value == "SKIPPED" and reg[0].detail == reason
    # the profile table shows the numbers, labelled
    from edgeship.commands.profile import format_results

    table = format_results([result], cfg)
    assert "hw (emulated)" in table and f"onnx-fp32: {reason}" in table


def test_cli_devices_setup_check_and_list(arm64_userland: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    from edgeship.cli import main

    toml = tmp_path / "edgeship.toml"
    toml.write_text((ROOT / "edgeship.toml").read_text() + "".join(
        f'\n[devices.{n}]\nkind = "emulated"\narch = "{d["arch"]}"\ncpu = "{d["cpu"]}"\n' for n, d in EMULATED.items()))
    assert main(["--config", str(toml), "devices", "setup", "pi5"]) == 0   # cached: says so, builds nothing
    out, err = capsys.readouterr()
    assert f"board userland already built: {arm64_userland}" in err and f"arm64 userland at {arm64_userland}" in out
    assert main(["--config", str(toml), "devices", "setup", "hw"]) == 0
    assert "nothing to set up" in capsys.readouterr().out
    assert main(["--config", str(toml), "devices"]) == 0
    assert "qemu-user arm64 -cpu cortex-a76 (arm64-dotprod; numerics only)" in capsys.readouterr().out
    assert main(["--config", str(toml), "devices", "check", "pi5"]) == 0
    out = capsys.readouterr().out
    assert "emulated: qemu-user arm64 -cpu cortex-a76 (class arm64-dotprod)" in out
    assert f"userland: {arm64_userland}" in out and "(aarch64)" in out and "usable: yes" in out
    # a fresh cache: check says what to run, exit 1
    monkeypatch.setenv("EDGESHIP_CACHE_DIR", str(tmp_path / "fresh"))
    assert main(["--config", str(toml), "devices", "check", "pi5"]) == 1
    assert "run 'edgeship devices setup pi5' once" in capsys.readouterr().out


def test_gate_the_demo_int8_on_the_emulated_cortex_a76(demo_project: Any, arm64_userland: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 16's promise end to end, through the CLI: export the demo's INT8 for the board's
    CPU class, evaluate it ON the emulated Cortex-A76 (the real aarch64 runtimes), and gate on
    those numbers; its latency budget is SKIPPED, never PASS."""
    from edgeship.cli import main
    from tests.conftest import cli_project

    shutil.copytree(demo_project[0].build / "artifacts", tmp_path / "build" / "artifacts")
    text = (ROOT / "edgeship.toml").read_text()
    budgets = ('\n[devices.pi5]\nkind = "emulated"\narch = "arm64"\ncpu = "cortex-a76"\n'
               '\n[[budgets]]\ndevice = "pi5"\ntarget = "*"\nprecision = "int8"\nlatency_ms = { p90 = 5.0 }\n'
               'max_accuracy_drop = 0.005\nmin_cosine = 0.999\n')
    toml = cli_project(tmp_path, {text[text.index("# Example budgets"):]: ""}, append=budgets)
    cfg = ["--config", str(toml)]

    # the budgets name pi5 only: its class (arm64-dotprod) is the default build's
    assert main([*cfg, "export", "--target", "onnx", "--precision", "int8"]) == 0
    built = json.loads((tmp_path / "build" / "artifacts" / "digits_cnn" / "onnx-int8" / "manifest.json").read_text())
    assert built["built_for"]["cpu_class"] == "arm64-dotprod", built["built_for"]

    assert main([*cfg, "eval", "--device", "pi5", "--precision", "int8", "--target", "onnx,tflite"]) == 0
    entries = json.loads((tmp_path / "build" / "reports" / "eval.json").read_text())["entries"]
    for name in ("onnx-int8", "tflite-int8"):
        e = entries[f"pi5/{name}"]
        assert e["status"] == "ok" and e["cpu"]["cpu_class"] == "arm64-dotprod", e
        assert e["cosine_mean"] >= 0.999 and e["accuracy_drop"] <= 0.005, (name, e)

    assert main([*cfg, "profile", "--device", "pi5", "--precision", "int8", "--target", "onnx,tflite"]) == 0
    capsys.readouterr()
    code = main([*cfg, "gate", "--no-remeasure"])
    out = capsys.readouterr().out
    checks = json.loads((tmp_path / "build" / "reports" / "report.json").read_text())["checks"]
    assert code == 0, out
    by_metric: dict[str, list[dict[str, Any]]] = {}
    for c in checks:
        by_metric.setdefault(c["metric"], []).append(c)
    assert {c["device"] for c in checks} == {"pi5"}
    assert all(c["verdict"] == "PASS" for m in ("accuracy_drop", "cosine_mean") for c in by_metric[m])
    assert len(by_metric["cosine_mean"]) == 2 and all("on pi5" in c["detail"] for c in by_metric["cosine_mean"])
    lat = by_metric["latency_p90_ms"]
    assert len(lat) == 2 and all(c["verdict"] == "SKIPPED" and "timing is not representative" in c["detail"] for c in lat)
