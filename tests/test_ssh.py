"""SSH device against a real OpenSSH server on loopback (tests/sshd.py)."""

from __future__ import annotations

import json
import re
import sys
import threading
import time
from pathlib import Path

import pytest

from edgeship.config import SSHDeviceConfig
from edgeship.devices.ssh import SSHDevice
from edgeship.errors import DeviceError
from tests.conftest import project_copy, require_tool
from tests.sshd import SSHD, SSHServer, start_sshd


@pytest.fixture
def sshd(tmp_path: Path):
    # a real OpenSSH server on loopback; missing: skip with the install command (fail under CI=true)
    require_tool("sshd", "apt-get install openssh-server", SSHD)
    require_tool("ssh", "apt-get install openssh-client")
    server = start_sshd(tmp_path / "sshd")
    yield server
    if server.proc.poll() is None:
        server.kill()


def device(server: SSHServer, **extra: object) -> SSHDevice:
    return SSHDevice("board", SSHDeviceConfig(**server.device_config(sys.executable, **extra)))


def _remote_exists(server: SSHServer, path: str) -> bool:
    return Path(path).exists()   # loopback: the "board" filesystem is this machine's


def test_push_run_pull_roundtrip_with_awkward_names(sshd: SSHServer, tmp_path: Path) -> None:
    src = tmp_path / "it's a \"dir\" $HOME"
    src.mkdir()
    (src / "a file;rm -rf x.txt").write_text("payload")
    with device(sshd, env={"EDGESHIP_TEST": "v a l"}) as dev:
        remote = dev.push(src, "bundle x")
        assert remote.endswith("/bundle x")
        res = dev.run([sys.executable, "-c",
                       "import os, sys; print(open(sys.argv[1]).read(), os.environ['EDGESHIP_TEST'], os.getcwd())",
                       "a file;rm -rf x.txt"], timeout=30, cwd=remote)
        assert res.returncode == 0, res.stderr
        assert res.stdout.split("\n")[0] == f"payload v a l {remote}"
        dev.run([sys.executable, "-c", "open('out $1.json','w').write('{}')"], timeout=30, cwd=remote)
        dev.pull(f"{remote}/out $1.json", tmp_path / "pulled.json")
        assert (tmp_path / "pulled.json").read_text() == "{}"
        workdir = dev.workdir
        assert _remote_exists(sshd, workdir)
    assert not _remote_exists(sshd, workdir)        # removed at the end


def test_unknown_host_key_is_refused(sshd: SSHServer, tmp_path: Path) -> None:
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    cfg = sshd.device_config(sys.executable)
    cfg["ssh_options"] = [f"UserKnownHostsFile={empty}", "StrictHostKeyChecking=yes"]
    with pytest.raises(DeviceError, match=r"^device 'board': connect refused: ssh says 'Host key verification failed\.' \(ssh \w+@127\.0\.0\.1\); verify "), \
            SSHDevice("board", SSHDeviceConfig(**cfg)):
        pass


def test_disabling_host_key_checking_is_refused(sshd: SSHServer) -> None:
    from pydantic import ValidationError

    cfg = sshd.device_config(sys.executable)
    cfg["ssh_options"] = ["StrictHostKeyChecking=no"]
    with pytest.raises(ValidationError, match="'StrictHostKeyChecking=no' is refused"):
        SSHDeviceConfig(**cfg)


def _running(cmdline: list[str]) -> bool:
    for d in Path("/proc").iterdir():
        try:
            if d.name.isdigit() and (d / "cmdline").read_bytes().split(b"\0")[:-1] == [c.encode() for c in cmdline]:
                return True
        except OSError:
            continue
    return False


def test_hanging_command_times_out_and_cleans_up(sshd: SSHServer) -> None:
    with device(sshd) as dev:
        workdir = dev.workdir
        with pytest.raises(DeviceError, match=r"^device 'board': run sleep timed out after 1.5 s$"):
            dev.run(["sleep", "31.4159"], timeout=1.5)
        deadline = time.monotonic() + 5
        while _running(["sleep", "31.4159"]) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _running(["sleep", "31.4159"])          # killed on the board, not just the ssh client
    assert not _remote_exists(sshd, workdir)


def test_failed_run_still_removes_workdir(sshd: SSHServer) -> None:
    with pytest.raises(RuntimeError), device(sshd) as dev:
        workdir = dev.workdir
        res = dev.run(["sh", "-c", "echo partial > result.json; exit 4"], timeout=30)
        assert res.returncode == 4 and (Path(workdir) / "result.json").exists()
        raise RuntimeError("caller gives up after a failed run")
    assert not _remote_exists(sshd, workdir)


def test_profile_and_gate_over_ssh(sshd: SSHServer, demo_project, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from edgeship.cli import main
    from edgeship.measure.profile import profile
    from edgeship.types import Target
    from tests.conftest import cli_project

    cfg = project_copy(tmp_path, demo_project[0], devices={"board": sshd.device_config(sys.executable)})
    local = profile(cfg, "local", (Target.ONNX,), None)
    remote = profile(cfg, "board", (Target.ONNX, Target.TFLITE), None)
    assert {r["artifact"]["name"] for r in remote} >= {"onnx-fp32", "onnx-int8", "tflite-int8"}
    for r in remote:
        assert r["device"] == {"name": "board", "kind": "ssh"} and r["status"] == "ok"
        assert set(r) == set(local[0])                                   # same schema as local
        assert set(r["timing"]) == set(local[0]["timing"]) and len(r["timing"]["samples_ns"]) >= 64
        assert r["outputs"]["cosine"] >= 0.99 and r["outputs"]["top1_agreement"] == 1.0   # pulled from the board
    assert (cfg.build / "results" / "board" / "onnx-int8.json").is_file()
    toml = cli_project(tmp_path, append=(
        f'\n[devices.board]\nkind = "ssh"\nhost = "{sshd.user}@127.0.0.1"\nport = {sshd.port}\n'
        f'python = "{sys.executable}"\nidentity_file = "{sshd.client_key}"\n'
        f'ssh_options = ["UserKnownHostsFile={sshd.known_hosts}", "StrictHostKeyChecking=yes"]\n'
        '\n[[budgets]]\ndevice = "board"\ntarget = "onnx"\nprecision = "*"\nlatency_ms = { p90 = 50.0 }\n'
        # far below any speed-up a CPU gives: the verdict does not depend on this machine's load
        '\n[[budgets]]\ndevice = "board"\ntarget = "onnx"\nprecision = "int8"\nmin_speedup_vs_fp32 = 0.01\n'
    ))
    code = main(["--config", str(toml), "profile", "--device", "board", "-t", "onnx", "-p", "fp32,int8"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert any(ln.split()[:2] == ["onnx-int8", "board"] for ln in out.splitlines()), out
    # gate --device board judges the demo's "*" fidelity budgets on the board's own eval
    assert main(["--config", str(toml), "eval", "--device", "board", "-p", "int8,fp16"]) == 0
    capsys.readouterr()
    code = main(["--config", str(toml), "gate", "--device", "board"])
    out = capsys.readouterr().out
    assert code == 0, out
    report = json.loads((tmp_path / "build" / "reports" / "report.json").read_text())
    devices = {c["device"] for c in report["checks"] if c["metric"].startswith("latency")}
    assert devices == {"board"}
    (speedup,) = [c for c in report["checks"] if c["metric"] == "speedup_vs_fp32"]
    assert speedup["device"] == "board" and speedup["verdict"] == "PASS", speedup   # one session's paired rounds


def test_server_killed_mid_run(sshd: SSHServer, demo_project, tmp_path: Path) -> None:
    from edgeship.measure.profile import profile
    from edgeship.types import Precision, Target

    prof = {"threads": 1, "warmup_runs": 5, "warmup_seconds": 0.05, "min_runs": 100, "min_seconds": 20.0,
            "max_seconds": 30.0, "max_runs": 0, "timeout_s": 60.0}
    cfg = project_copy(tmp_path, demo_project[0], profile=prof, devices={"board": sshd.device_config(sys.executable)})
    killer = threading.Timer(3.0, sshd.kill)
    killer.start()
    t0 = time.monotonic()
    try:
        with pytest.raises(DeviceError) as exc:
            profile(cfg, "board", (Target.ONNX,), (Precision.FP32,))
    finally:
        killer.cancel()
    assert time.monotonic() - t0 < 30
    msg = str(exc.value)
    assert "\n" not in msg and re.match(r"^device 'board', artifact onnx-fp32: (run|push \S+|pull \S+) failed: .+ \(ssh ", msg), msg
    assert not (cfg.build / "results" / "board").exists()     # nothing partial saved


def _board_toml(tmp_path: Path, server: SSHServer, python: str, name: str = "board") -> Path:
    from tests.conftest import cli_project

    return cli_project(tmp_path, append=(
        f'\n[devices.{name}]\nkind = "ssh"\nhost = "{server.user}@127.0.0.1"\nport = {server.port}\n'
        f'python = "{python}"\nidentity_file = "{server.client_key}"\nconnect_timeout_s = 5\n'
        f'ssh_options = ["UserKnownHostsFile={server.known_hosts}", "StrictHostKeyChecking=yes"]\n'))


def test_info_reports_what_the_runner_sees(sshd: SSHServer) -> None:
    with device(sshd) as dev:
        info = dev.info()
        leftover = [p for p in Path(dev.workdir).iterdir() if not p.name.startswith(".run-")]   # pid files go with the dir
    assert info["kind"] == "ssh" and info["env"]["python"] == "{}.{}.{}".format(*sys.version_info[:3])
    assert info["env"]["numpy"]
    assert info["runtimes"]["onnxruntime"]["available"] and info["runtimes"]["litert"]["available"]
    assert not info["runtimes"]["coreml"]["available"]
    assert leftover == []                                                  # the info bundle was removed


def test_devices_check_usable_board(sshd: SSHServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from edgeship.cli import main

    code = main(["--config", str(_board_toml(tmp_path, sshd, sys.executable)), "devices", "check", "board"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "reachable: yes" in out and "numpy: 2." in out and "onnxruntime: 1." in out and "usable: yes" in out


def test_devices_check_board_without_numpy_says_what_to_install(sshd: SSHServer, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    import shutil
    import subprocess

    from edgeship.cli import main

    bare = shutil.which("python3", path="/usr/bin:/bin")
    assert bare and subprocess.run([bare, "-c", "import numpy"], capture_output=True, check=False).returncode != 0, \
        "this test needs a system python3 without numpy as the 'bare board'"
    code = main(["--config", str(_board_toml(tmp_path, sshd, bare)), "devices", "check", "board"])
    out = capsys.readouterr().out
    assert code == 1, out
    assert "numpy: MISSING" in out and f"required: numpy  ->  {bare} -m pip install numpy" in out and "usable: NO" in out


def test_devices_check_board_without_the_configured_python(sshd: SSHServer, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    from edgeship.cli import main

    code = main(["--config", str(_board_toml(tmp_path, sshd, "/opt/no such/python3")), "devices", "check", "board"])
    out = capsys.readouterr().out
    assert code == 1, out
    assert "reachable: yes" in out and "device 'board': info failed: " in out and "/opt/no such/python3" in out
    assert out.rstrip().endswith("usable: NO")


def test_devices_check_unreachable_and_unknown(sshd: SSHServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from edgeship.cli import main

    toml = _board_toml(tmp_path, sshd, sys.executable)
    sshd.kill()
    assert main(["--config", str(toml), "devices", "check", "board"]) == 1
    out = capsys.readouterr().out
    assert f"reachable: no: device 'board': connect failed: ssh: connect to host 127.0.0.1 port {sshd.port}: Connection refused" in out
    assert main(["--config", str(toml), "devices", "check", "bord"]) == 2
    assert "unknown device 'bord'" in capsys.readouterr().err


def test_devices_list(sshd: SSHServer, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from edgeship.cli import main

    monkeypatch.setenv("PATH", "/nonexistent")          # no adb client on this machine's PATH
    assert main(["--config", str(_board_toml(tmp_path, sshd, sys.executable)), "devices"]) == 0
    out = capsys.readouterr().out

    assert re.search(rf"^board +ssh +{sshd.user}@127\.0\.0\.1:{sshd.port}$", out, re.MULTILINE)
    assert re.search(r"^local +local +this machine$", out, re.MULTILINE)
    assert "adb: 'adb' not found" in out


def test_connect_is_retried_once(sshd: SSHServer, tmp_path: Path) -> None:
    """A refused first connection (server restarting) is retried; a run is never retried."""
    import subprocess as sp

    calls = []
    real = sp.run

    def flaky(argv, *a, **kw):
        calls.append(argv)
        if len(calls) == 1:                              # the first ssh call fails like a dropped link
            return sp.CompletedProcess(argv, 255, b"", b"ssh: connect to host 127.0.0.1: Connection refused\n")
        return real(argv, *a, **kw)

    dev = device(sshd)
    import edgeship.devices.ssh as ssh_mod

    orig = ssh_mod.subprocess.run
    ssh_mod.subprocess.run = flaky
    try:
        with dev:
            n = len(calls)
            res = dev.run(["sh", "-c", "echo ran >> count; exit 3"], timeout=30)
            assert res.returncode == 3 and len(calls) == n + 1     # one ssh call: not retried
            assert (Path(dev.workdir) / "count").read_text() == "ran\n"
    finally:
        ssh_mod.subprocess.run = orig
    assert calls[0][-1].startswith("mktemp") and calls[1][-1].startswith("mktemp")


def test_eval_on_the_board_and_the_gate_judges_its_numbers(sshd: SSHServer, demo_project, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    """`edgeship eval --device board` over the real loopback sshd; a budget for the board uses them."""
    from edgeship.artifact.atomic import sha256_file
    from edgeship.cli import main

    project_copy(tmp_path, demo_project[0])
    budget = ('\n[[budgets]]\ndevice = "board"\ntarget = "onnx"\nprecision = "fp32"\nmin_cosine = 0.999\n'
              'max_accuracy_drop = 0.01\n')
    toml = _board_toml(tmp_path, sshd, sys.executable)
    text = toml.read_text()      # the demo's budgets replaced by one for the board (they need local profiles)
    toml.write_text(text[:text.index("# Example budgets")] + text[text.index("\n[devices.board]"):] + budget)
    code = main(["--config", str(toml), "eval", "--device", "board", "-t", "onnx", "-p", "fp32", "--chunk", "128"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "board/onnx-fp32" in out
    path = tmp_path / "build" / "reports" / "eval.json"
    report = json.loads(path.read_text())
    board, local = report["entries"]["board/onnx-fp32"], report["entries"]["local/onnx-fp32"]
    art = tmp_path / "build" / "artifacts" / report["model"] / "onnx-fp32"
    assert board["device"] == "board" and board["status"] == "ok" and board["samples"] == report["samples"]
    assert board["artifact_digest"] == sha256_file(art / "manifest.json") == local["artifact_digest"]
    assert board["cpu"]                                      # what the board's runner reported
    for k in ("cosine_min", "cosine_mean", "top1_agreement", "accuracy", "accuracy_drop"):
        assert board[k] == pytest.approx(local[k], abs=1e-6), k     # same CPU, same runtime: same numbers

    code = main(["--config", str(toml), "gate"])
    out = capsys.readouterr().out
    assert code == 0, out
    checks = json.loads((tmp_path / "build" / "reports" / "report.json").read_text())["checks"]
    assert {c["metric"] for c in checks} == {"cosine_mean", "accuracy_drop"}
    cos = next(c for c in checks if c["metric"] == "cosine_mean")
    assert cos["value"] == board["cosine_mean"] and "cosine on board" in cos["detail"]
    # without the board's own eval the budget has no evidence: the local entry does not stand in
    del report["entries"]["board/onnx-fp32"]
    path.write_text(json.dumps(report))
    assert main(["--config", str(toml), "gate"]) == 1
    capsys.readouterr()
    checks = json.loads((tmp_path / "build" / "reports" / "report.json").read_text())["checks"]
    assert all(not c["passed"] and c["device"] == "board" for c in checks)
    assert {c["rerun"] for c in checks} == {"edgeship eval --device board --target onnx --precision fp32"}

