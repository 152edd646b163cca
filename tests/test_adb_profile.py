"""adb device end to end through profile and gate, against a scripted stand-in for adb
(a TEST DOUBLE: no phone is reachable here). Parser unit tests live in test_parsers.py."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import pytest

from edgeship.devices._parsers import parse_benchmark_model
from edgeship.errors import DeviceError

DATA = Path(__file__).parent / "data"

@pytest.fixture
def fake_adb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    script = tmp_path / "adb"     # runs the shared TEST DOUBLE tests/fake_adb.py
    script.write_text(f"#!/bin/sh\nexec {shlex.quote(sys.executable)} {shlex.quote(str(Path(__file__).parent / 'fake_adb.py'))} \"$@\"\n")
    script.chmod(0o755)
    log = tmp_path / "adb.log"
    monkeypatch.setenv("FAKE_ADB_LOG", str(log))
    monkeypatch.setenv("FAKE_ADB_OUTPUT", str(DATA / "benchmark_model_ok.txt"))
    return script, log


def calls(log: Path) -> list[list[str]]:
    return [json.loads(line) for line in log.read_text().splitlines()]


def test_profile_sequence_and_quoting(fake_adb, demo_project, tmp_path: Path) -> None:
    from edgeship.measure.profile import profile
    from edgeship.types import Precision, Target
    from tests.conftest import project_copy

    script, log = fake_adb
    tool = tmp_path / "benchmark_model"
    tool.write_bytes(b"\x7fELF fake arm64 binary")
    cfg = project_copy(tmp_path, demo_project[0], devices={"pixel": {
        "kind": "adb", "adb": str(script), "serial": "emulator 5554", "cpu_mask": "f0",
        "benchmark_binaries": {"tflite": str(tool)},
    }})
    results = profile(cfg, "pixel", (Target.TFLITE, Target.ONNX), (Precision.INT8,))
    by = {r["artifact"]["name"]: r for r in results}
    assert by["onnx-int8"]["status"] == "skipped" and "benchmark_binaries.onnx" in by["onnx-int8"]["skip_reason"]
    tfl = by["tflite-int8"]
    printed = parse_benchmark_model((DATA / "benchmark_model_ok.txt").read_text())
    agg = printed["timing"]["aggregate"]
    rounds = tfl["timing"]["rounds"]       # one native tool run per round, its aggregates kept apart
    assert tfl["status"] == "ok" and len(rounds) == 2 and all(e["aggregate"] == agg for e in rounds)
    # identical rounds: the merged aggregate is the printed one, with the runs of both rounds counted
    assert tfl["timing"]["aggregate"] == {**agg, "count": None if agg.get("count") is None else 2 * agg["count"]}
    assert tfl["device"] == {"name": "pixel", "kind": "adb"} and tfl["env"]["cpu"] == "Tensor G2"
    seq = calls(log)
    assert all(c[:2] == ["-s", "emulator 5554"] for c in seq)      # serial passed as one argv item
    verbs = [c[2] if c[2] != "shell" else "shell:" + shlex.split(c[3])[0] for c in seq]
    assert verbs[:4] == ["get-state", "shell:mkdir", "push", "shell:chmod"]
    assert verbs[4] == "push" and seq[4][4] == "/data/local/tmp/edgeship/tflite-int8-model.tflite"
    run = next(c for c in seq if c[2] == "shell" and c[3].startswith("cd "))
    words = shlex.split(run[3])
    assert words[:3] == ["cd", "/data/local/tmp/edgeship", "&&"]
    assert words[3:6] == ["taskset", "f0", "/data/local/tmp/edgeship/benchmark_model"]
    assert "--graph=/data/local/tmp/edgeship/tflite-int8-model.tflite" in words and "--num_threads=1" in words
    assert shlex.split(seq[-1][3]) == ["rm", "-rf", "/data/local/tmp/edgeship"]   # cleaned up
    saved = json.loads((cfg.build / "results" / "pixel" / "tflite-int8.json").read_text())
    assert saved["timing"]["aggregate"]["mean"] == printed["timing"]["aggregate"]["mean"]


def test_tool_failure_is_one_clear_error_and_no_result(fake_adb, demo_project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from edgeship.measure.profile import profile
    from edgeship.types import Precision, Target
    from tests.conftest import project_copy

    script, _ = fake_adb
    monkeypatch.setenv("FAKE_ADB_OUTPUT", str(DATA / "benchmark_model_fail.txt"))
    monkeypatch.setenv("FAKE_ADB_EXIT", "1")
    tool = tmp_path / "benchmark_model"
    tool.write_bytes(b"bin")
    cfg = project_copy(tmp_path, demo_project[0], devices={"pixel": {
        "kind": "adb", "adb": str(script), "benchmark_binaries": {"tflite": str(tool)}}})
    with pytest.raises(DeviceError, match="benchmark_model did not finish: .*Could not open"):
        profile(cfg, "pixel", (Target.TFLITE,), (Precision.INT8,))
    assert not (cfg.build / "results" / "pixel").exists()


def test_unauthorized_phone(fake_adb, monkeypatch: pytest.MonkeyPatch) -> None:
    from edgeship.config import ADBDeviceConfig
    from edgeship.devices.adb import ADBDevice

    script, _ = fake_adb
    monkeypatch.setenv("FAKE_ADB_STATE", "unauthorized")
    with pytest.raises(DeviceError, match="device 'pixel': adb reports state 'unauthorized'"), \
            ADBDevice("pixel", ADBDeviceConfig(kind="adb", adb=str(script))):
        pass


def test_gate_decides_adb_results_on_printed_values(fake_adb, demo_project, tmp_path: Path) -> None:
    from edgeship.gating.judge import gate
    from edgeship.measure.profile import profile
    from edgeship.types import Precision, Target
    from tests.conftest import project_copy

    script, _ = fake_adb
    tool = tmp_path / "benchmark_model"
    tool.write_bytes(b"bin")
    mean_ms = parse_benchmark_model((DATA / "benchmark_model_ok.txt").read_text())["timing"]["aggregate"]["mean"] / 1e6
    budgets = [{"device": "pixel", "target": "tflite", "precision": "int8", "latency_ms": {"mean": mean_ms * 1.01}},
               {"device": "pixel", "target": "tflite", "precision": "int8", "latency_ms": {"p90": 100.0}}]
    cfg = project_copy(tmp_path, demo_project[0], budgets=budgets, devices={"pixel": {
        "kind": "adb", "adb": str(script), "benchmark_binaries": {"tflite": str(tool)}}})
    profile(cfg, "pixel", (Target.TFLITE,), (Precision.INT8,))
    res = gate(cfg, "pixel")
    verdicts = {c.check.metric: (c.verdict.value, c.passed) for c in res.checks}
    assert verdicts["latency_mean_ms"] == ("PASS", True)       # the average printed by the tool
    assert verdicts["latency_p90_ms"] == ("FAIL", False)       # benchmark_model prints no p90
