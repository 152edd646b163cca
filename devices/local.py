"""The local CPU as a device: a temp work dir and a fresh subprocess per run.

Measurements never happen in the edgeship process itself: the runner starts in a new
interpreter, exactly as it would on a board, so imports, allocator state and threads of
edgeship do not leak into the numbers.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from edgeship.config import LocalDeviceConfig
from edgeship.devices.base import DEVICES, Device, RunResult
from edgeship.errors import DeviceError


@DEVICES.register("local")
class LocalDevice(Device):
    kind = "local"

    def __init__(self, name: str = "local", config: LocalDeviceConfig | None = None) -> None:
        super().__init__(name, config or LocalDeviceConfig())

    @property
    def python(self) -> str:
        return self.config.python or sys.executable

    def connect(self) -> None:
        if self._workdir is None:
            self._workdir = tempfile.mkdtemp(prefix="edgeship-local-")

    def push(self, local: Path, remote_name: str) -> str:
        dest = Path(self.workdir) / remote_name
        if Path(local).is_dir():
            shutil.copytree(local, dest, dirs_exist_ok=True)
        else:
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(local, dest)
        return str(dest)

    def run(self, argv: list[str], timeout: float, cwd: str | None = None) -> RunResult:
        t0 = time.monotonic()
        # own process group so a timeout kills the runner and anything it started
        try:
            proc = subprocess.Popen(self._command(argv), cwd=cwd or self.workdir, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    text=True, start_new_session=True)
        except OSError as exc:
            raise DeviceError(f"device '{self.name}': cannot start {argv[0]} ({exc.strerror or exc}); "
                              f"check [devices.{self.name}] python in edgeship.toml") from None
        try:
            out, err = proc.communicate(timeout=timeout)
        except KeyboardInterrupt:
            # Ctrl-C reaches only our process group; the runner has its own: stop it too
            with contextlib.suppress(ProcessLookupError):   # it may have exited already
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            try:   # a grandchild that left our process group could hold the pipes open
                proc.communicate(timeout=5)
            except subprocess.TimeoutExpired:
                pass
            what = " ".join(" ".join([Path(argv[0]).name, *argv[1:3]]).split())   # one line, however odd argv is
            what = what if len(what) <= 80 else what[:77] + "..."
            raise DeviceError(f"device '{self.name}': '{what}' timed out after {timeout:g} s") from None
        return RunResult(list(argv), proc.returncode, out, err, time.monotonic() - t0)

    def _command(self, argv: list[str]) -> list[str]:
        """The argv actually started for ``argv`` (an emulated board wraps it in qemu)."""
        return list(argv)

    def pull(self, remote: str, local: Path) -> None:
        src = Path(remote)
        if not src.is_file():
            raise DeviceError(f"device '{self.name}': {remote} does not exist")
        Path(local).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, local)

    def info(self) -> dict[str, Any]:
        """Ask the device's python itself (runner ``--info``): what the runner would see."""
        import json

        from edgeship.artifact.runner_files import RUNNER_PACKAGE, write_runner_package

        with tempfile.TemporaryDirectory(prefix="edgeship-info-") as tmp:
            write_runner_package(Path(tmp), None)
            run = self.run([self.python, "-m", f"{RUNNER_PACKAGE}.runner", "--info"], timeout=120, cwd=tmp)
        if run.returncode != 0:
            last = (run.stderr.strip().splitlines() or [f"exit code {run.returncode}"])[-1]
            raise DeviceError(f"device '{self.name}': {self.python} cannot run the runner: {last} "
                              "(it needs Python >= 3.8 and numpy)")
        try:
            found = json.loads(run.stdout)
        except ValueError:
            raise DeviceError(f"device '{self.name}': unreadable runner --info output: {run.stdout[:200]!r}") from None
        return {"kind": self.kind, "python": self.python, **found}

    def remove(self, *remote: str) -> None:
        # the work dir is on this filesystem (also for an emulated board): no process needed
        for path in remote:
            p = Path(path)
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink(missing_ok=True)

    def cleanup(self) -> None:
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None
