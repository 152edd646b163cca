"""The local device: same interface as ssh, a temp work dir and a fresh subprocess per run."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from edgeship.config import LocalDeviceConfig
from edgeship.devices.base import DEVICES
from edgeship.devices.local import LocalDevice
from edgeship.errors import DeviceError


def test_registered_as_local() -> None:
    assert DEVICES.get("local") is LocalDevice


def test_push_run_pull_cleanup(tmp_path: Path) -> None:
    src = tmp_path / "bundle"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "a.txt").write_text("hello")
    single = tmp_path / "one.txt"
    single.write_text("one")
    with LocalDevice() as dev:
        work = Path(dev.workdir)
        assert work.is_dir() and work != tmp_path
        remote = dev.push(src, "b")
        assert Path(remote, "sub", "a.txt").read_text() == "hello"
        assert Path(dev.push(single, "x/one.txt")).read_text() == "one"
        # a fresh interpreter, no shell: the argument with a space and a ';' arrives verbatim
        code = "import os, sys; open('out.txt', 'w').write(os.getcwd() + '|' + sys.argv[1]); print('ok'); sys.exit(3)"
        run = dev.run([sys.executable, "-c", code, "a b; rm -rf /"], timeout=30, cwd=remote)
        assert run.returncode == 3 and run.stdout.strip() == "ok" and run.elapsed_s > 0
        dev.pull(f"{remote}/out.txt", tmp_path / "back" / "out.txt")
        cwd, arg = (tmp_path / "back" / "out.txt").read_text().split("|")
        assert Path(cwd).resolve() == Path(remote).resolve() and arg == "a b; rm -rf /"
        with pytest.raises(DeviceError, match="device 'local': .*missing.txt does not exist"):
            dev.pull(f"{remote}/missing.txt", tmp_path / "m.txt")
        # default cwd is the work dir
        run = dev.run([sys.executable, "-c", "import os; print(os.getcwd())"], timeout=30)
        assert Path(run.stdout.strip()).resolve() == work.resolve()
    assert not work.exists()
    dev.cleanup()   # safe twice
    with pytest.raises(DeviceError, match="not connected"):
        _ = dev.workdir


def test_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    """The runner and anything it started die on timeout; one DeviceError names the device."""
    pidfile = tmp_path / "child.pid"
    code = (
        "import subprocess, sys, time\n"
        "c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        f"open({str(pidfile)!r}, 'w').write(str(c.pid))\n"
        "time.sleep(60)\n"
    )
    with LocalDevice("board-sim", LocalDeviceConfig()) as dev:
        t0 = time.monotonic()
        with pytest.raises(DeviceError, match=r"device 'board-sim': .* timed out after 1.5 s"):
            dev.run([sys.executable, "-c", code], timeout=1.5)
        assert time.monotonic() - t0 < 10
    child = int(pidfile.read_text())
    for _ in range(50):   # SIGKILL is asynchronous; the zombie is reaped by init
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        if Path(f"/proc/{child}/stat").exists() and Path(f"/proc/{child}/stat").read_text().split()[2] == "Z":
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"child {child} of the timed-out runner is still alive")


def test_configured_python_is_used(tmp_path: Path) -> None:
    fake = tmp_path / "py"
    fake.write_text(f"#!{sys.executable}\nimport sys; print('fake', sys.argv[1:])\n")
    fake.chmod(0o755)
    with LocalDevice("alt", LocalDeviceConfig(python=str(fake))) as dev:
        assert dev.python == str(fake)
        assert dev.run([dev.python, "-V"], timeout=30).stdout.strip() == "fake ['-V']"
    assert LocalDevice().python == sys.executable


def test_missing_python_is_a_device_error(tmp_path: Path) -> None:
    with LocalDevice("gone", LocalDeviceConfig(python=str(tmp_path / "nope"))) as dev:
        with pytest.raises(DeviceError, match=r"device 'gone': cannot start .*nope.*\[devices.gone\] python"):
            dev.run([dev.python, "-V"], timeout=30)
        with pytest.raises(DeviceError, match="device 'gone'"):
            dev.info()


def test_info_comes_from_the_device_python() -> None:
    """info() runs the runner package in a subprocess: it reports what the runner would see."""
    import numpy as np
    import onnxruntime

    with LocalDevice() as dev:
        info = dev.info()
    assert info["kind"] == "local" and info["python"] == sys.executable
    assert info["executable"] == sys.executable
    assert info["env"]["numpy"] == np.__version__ and info["env"]["cpu_count"] == os.cpu_count()
    assert info["runtimes"]["onnxruntime"] == {"available": True, "version": onnxruntime.__version__}
    assert "coreml" in info["runtimes"]


def test_info_with_a_python_lacking_numpy(tmp_path: Path) -> None:
    """An interpreter without numpy (-S: no site-packages) cannot run the runner: one clear line."""
    fake = tmp_path / "bare-python"
    fake.write_text(f"#!/bin/sh\nexec {sys.executable} -S \"$@\"\n")
    fake.chmod(0o755)
    with LocalDevice("bare", LocalDeviceConfig(python=str(fake))) as dev, pytest.raises(
            DeviceError, match=r"device 'bare': .* cannot run the runner: .*numpy.*needs Python >= 3.8 and numpy"):
        dev.info()
