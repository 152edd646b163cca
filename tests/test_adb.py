"""adb device: command sequence, quoting, cooldown, disconnects and ``edgeship devices`` against
tests/fake_adb.py, a TEST DOUBLE for the adb client (no phone is reachable here). Parsers are
tested in test_parsers.py; profile/gate integration in test_adb_profile.py."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import pytest

from edgeship.devices._parsers import parse_perf_test
from edgeship.errors import DeviceError

HERE = Path(__file__).parent
DATA = HERE / "data"


@pytest.fixture
def adb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    wrapper = tmp_path / "bin" / "adb"
    wrapper.parent.mkdir()
    wrapper.write_text(f"#!/bin/sh\nexec {shlex.quote(sys.executable)} {shlex.quote(str(HERE / 'fake_adb.py'))} \"$@\"\n")
    wrapper.chmod(0o755)
    log = tmp_path / "adb.log"
    monkeypatch.setenv("FAKE_ADB_LOG", str(log))
    monkeypatch.setenv("FAKE_ADB_OUTPUT", str(DATA / "perf_test_ok.txt"))
    return wrapper, log


def calls(log: Path) -> list[list[str]]:
    return [json.loads(line) for line in log.read_text().splitlines()]


def _tool(tmp_path: Path) -> Path:
    tool = tmp_path / "my tools" / "perf test's"        # spaces and a quote in the path and the name
    tool.parent.mkdir()
    tool.write_bytes(b"\x7fELF not really")
    return tool


def test_onnx_sequence_quoting_and_cooldown(adb, demo_project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import edgeship.devices.adb as adb_mod
    from edgeship.measure.profile import profile
    from edgeship.types import Precision, Target
    from tests.conftest import project_copy

    script, log = adb
    tool = _tool(tmp_path)
    slept: list[float] = []
    monkeypatch.setattr(adb_mod.time, "sleep", slept.append)
    cfg = project_copy(tmp_path, demo_project[0], devices={"pixel": {
        "kind": "adb", "adb": str(script), "serial": "emulator-5554", "cooldown_s": 2.5,
        "benchmark_binaries": {"onnx": str(tool)}}})
    results = profile(cfg, "pixel", (Target.ONNX,), (Precision.FP32, Precision.INT8))
    assert [r["artifact"]["name"] for r in results] == ["onnx-fp32", "onnx-int8"]
    runs = 2 * cfg.profile.rounds                  # two artifacts, each measured in [profile] rounds
    assert slept.count(2.5) == runs - 1            # between runs, not before the first (others: subprocess polling)
    printed = parse_perf_test((DATA / "perf_test_ok.txt").read_text())
    r = results[1]
    assert r["status"] == "ok" and r["timing"]["samples_ns"] == []          # no samples invented
    # each round prints the same (the test double): the median over rounds is that value, the count their sum
    want = {**printed["timing"]["aggregate"], "count": printed["timing"]["aggregate"]["count"] * cfg.profile.rounds}
    assert r["timing"]["aggregate"] == want and r["timing"]["aggregate"]["p90"] == pytest.approx(178_000)
    assert r["memory"]["steady_peak_kb"] == 31506432 / 1024 and r["memory"]["method"] == "onnxruntime_perf_test"
    assert r["settings"]["cooldown_s"] == 2.5 and r["env"]["platform"] == "Android 14"

    seq = calls(log)
    assert all(c[:2] == ["-s", "emulator-5554"] for c in seq)
    pushes = [c[3:] for c in seq if c[2] == "push"]
    assert pushes[0] == [str(tool), "/data/local/tmp/edgeship/perf test's"]
    assert pushes[1][1] == "/data/local/tmp/edgeship/onnx-fp32-model.onnx"
    chmod = next(c for c in seq if c[2] == "shell" and c[3].startswith("chmod"))
    assert shlex.split(chmod[3]) == ["chmod", "755", "/data/local/tmp/edgeship/perf test's"]
    runs = [shlex.split(c[3]) for c in seq if c[2] == "shell" and c[3].startswith("cd ")]
    assert len(runs) == 2 * cfg.profile.rounds        # rounds interleave: fp32, int8, fp32, int8
    per_round = -(-cfg.profile.min_runs // cfg.profile.rounds)      # min_runs is the total over the rounds
    assert runs[1] == ["cd", "/data/local/tmp/edgeship", "&&", "/data/local/tmp/edgeship/perf test's",
                       "-e", "cpu", "-m", "times", "-r", str(per_round), "-x", "1", "-I", "-s",
                       "/data/local/tmp/edgeship/onnx-int8-model.onnx"]     # no taskset without cpu_mask
    assert shlex.split(seq[-1][3]) == ["rm", "-rf", "/data/local/tmp/edgeship"]


def test_tflite_argv_asks_for_peak_memory_and_pins_cpus(adb, tmp_path: Path) -> None:
    from edgeship.config import ADBDeviceConfig
    from edgeship.devices.adb import ADBDevice
    from tests.conftest import make_config

    script, _ = adb
    dev = ADBDevice("pixel", ADBDeviceConfig(kind="adb", adb=str(script), cpu_mask="f0"))
    argv = dev.native_argv("tflite", "/data/local/tmp/edgeship/benchmark_model", "/x/m.tflite", make_config(tmp_path), 50)
    assert argv[:3] == ["taskset", "f0", "/data/local/tmp/edgeship/benchmark_model"]
    assert "--report_peak_memory_footprint=true" in argv and "--num_runs=50" in argv and "--graph=/x/m.tflite" in argv


def test_phone_disconnects_mid_run(adb, demo_project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from edgeship.measure.profile import profile
    from edgeship.types import Precision, Target
    from tests.conftest import project_copy

    script, log = adb
    monkeypatch.setenv("FAKE_ADB_DROP", "1")
    cfg = project_copy(tmp_path, demo_project[0], devices={"pixel": {
        "kind": "adb", "adb": str(script), "benchmark_binaries": {"onnx": str(_tool(tmp_path))}}})
    with pytest.raises(DeviceError) as exc:
        profile(cfg, "pixel", (Target.ONNX,), (Precision.INT8,))
    assert str(exc.value) == "device 'pixel': run perf test's failed: error: closed (phone disconnected?)"
    assert not (cfg.build / "results" / "pixel").exists()                  # nothing partial saved
    assert calls(log)[-1] == ["shell", "rm -rf /data/local/tmp/edgeship"]     # cleanup still attempted


def test_hanging_tool_times_out_and_is_killed_on_the_phone(adb, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from edgeship.config import ADBDeviceConfig
    from edgeship.devices.adb import ADBDevice

    script, log = adb
    monkeypatch.setenv("FAKE_ADB_HANG", "20")
    with ADBDevice("pixel", ADBDeviceConfig(kind="adb", adb=str(script), cpu_mask="3")) as dev:
        argv = ["taskset", "3", "/data/local/tmp/edgeship/benchmark_model", "--graph=m.tflite"]
        with pytest.raises(DeviceError, match=r"^device 'pixel': run benchmark_model timed out after 1 s$"):
            dev.run(argv, timeout=1)
    seq = calls(log)
    assert seq[-2] == ["shell", "pkill -f /data/local/tmp/edgeship/benchmark_model"]     # the tool, not taskset
    assert seq[-1] == ["shell", "rm -rf /data/local/tmp/edgeship"]


def test_tool_exits_nonzero_after_output_is_an_error(adb, demo_project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from edgeship.measure.profile import profile
    from edgeship.types import Precision, Target
    from tests.conftest import project_copy

    script, _ = adb
    monkeypatch.setenv("FAKE_ADB_OUTPUT", str(DATA / "perf_test_missing_model.txt"))
    monkeypatch.setenv("FAKE_ADB_EXIT", "255")
    cfg = project_copy(tmp_path, demo_project[0], devices={"pixel": {
        "kind": "adb", "adb": str(script), "benchmark_binaries": {"onnx": str(_tool(tmp_path))}}})
    with pytest.raises(DeviceError, match=r"^device 'pixel': run perf test's on onnx-int8: onnxruntime_perf_test did "
                                          r"not finish: Load model from .* File doesn't exist$"):
        profile(cfg, "pixel", (Target.ONNX,), (Precision.INT8,))
    assert not (cfg.build / "results" / "pixel").exists()


def test_adb_client_missing(tmp_path: Path) -> None:
    from edgeship.config import ADBDeviceConfig
    from edgeship.devices.adb import ADBDevice

    dev = ADBDevice("pixel", ADBDeviceConfig(kind="adb", adb="/nonexistent/adb"))
    with pytest.raises(DeviceError, match=r"device 'pixel': the adb client '/nonexistent/adb' is not installed"), dev:
        pass


def _toml(tmp_path: Path, script: Path, binaries: str = "") -> Path:
    from tests.conftest import cli_project

    return cli_project(tmp_path, append=f'\n[devices.pixel]\nkind = "adb"\nadb = "{script}"\nserial = "emulator-5554"\n{binaries}')


def test_devices_lists_adb_phones(adb, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from edgeship.cli import main

    script, _ = adb
    assert main(["--config", str(_toml(tmp_path, script)), "devices"]) == 0
    out = capsys.readouterr().out
    assert "pixel" in out and "serial emulator-5554" in out
    assert f"adb ({script}):" in out
    lines = {ln.split()[0]: ln.split() for ln in out.splitlines() if ln.startswith(("emulator-5554", "2A021FDH3000XY"))}
    assert lines["emulator-5554"][1:3] == ["device", "sdk_gphone64_arm64"] and lines["2A021FDH3000XY"][1] == "unauthorized"


def test_devices_check_adb(adb, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from edgeship.cli import main

    script, _ = adb
    assert main(["--config", str(_toml(tmp_path, script)), "devices", "check", "pixel"]) == 1
    out = capsys.readouterr().out
    assert "model: Pixel 7" in out and "machine: arm64-v8a" in out and "usable: NO" in out
    assert "LiteRT benchmark_model for tflite  ->  build it for arm64-v8a and set [devices.pixel] benchmark_binaries.tflite" in out
    tool = _tool(tmp_path)
    toml = _toml(tmp_path, script, f'benchmark_binaries = {{ onnx = "{tool}" }}\n')
    assert main(["--config", str(toml), "devices", "check", "pixel"]) == 0
    out = capsys.readouterr().out
    assert f"can run: onnx: {tool}" in out and "usable: yes" in out
