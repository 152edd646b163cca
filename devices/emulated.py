"""A board emulated by qemu-user on this machine: its numerics count, its timings do not.

It is the local device (temp work dir, fresh subprocess, the same timeout and kill handling)
with every command started as

    unshare --mount --propagation private -- PYTHON -I -c _ENTER CPUINFO \
        qemu-<arch>-static -cpu CPU [-L ROOT -E PYTHONPATH=ROOT/site] BOARD_PYTHON -m ... runner

The runtimes detect CPU features from /proc/cpuinfo (both crash on arm64 when they read the
host's x86 one), so a cpuinfo of the emulated model is bind-mounted over /proc/cpuinfo in a
private mount namespace that ends with the command: the host's /proc is never touched.
As root that is ``unshare --mount``; another user needs unprivileged user namespaces
(``unshare --map-root-user``), which connect() probes so the failure is one clear line.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from edgeship.config import EmulatedDeviceConfig
from edgeship.devices import boards
from edgeship.devices.base import DEVICES, RunResult
from edgeship.devices.board_cpus import cpuinfo_text
from edgeship.devices.local import LocalDevice
from edgeship.errors import DeviceError

# Runs inside the new mount namespace: bind the emulated cpuinfo, then become qemu. Plain
# argv in and out (no shell); `mount` is the system tool, so its errors are its own words.
_ENTER = ("import os, subprocess, sys\n"
          "r = subprocess.run(['mount', '--bind', sys.argv[1], '/proc/cpuinfo'])\n"
          "sys.exit(r.returncode) if r.returncode else os.execvp(sys.argv[2], sys.argv[2:])\n")
_TCG_WARNING = "warning: TCG doesn't support requested feature"


def enter_argv(cpuinfo: str) -> list[str]:
    """argv prefix: a private mount namespace with the emulated ``cpuinfo``, then exec the rest."""
    userns = [] if os.geteuid() == 0 else ["--map-root-user"]
    return ["unshare", *userns, "--mount", "--propagation", "private", "--",
            sys.executable, "-I", "-c", _ENTER, cpuinfo]


def qemu_argv(qemu: str, cpu: str, root: Path | None) -> list[str]:
    """qemu-user as ``cpu``; with an arm64 userland ``root``, its libraries and site dir."""
    argv = [qemu, "-cpu", cpu]
    if root is not None:
        # -E sets the guest's environment: the board's site dir, and nothing from the host's
        argv += ["-L", str(root), "-E", f"PYTHONPATH={boards.site_dir(root)}", "-E", "PYTHONNOUSERSITE=1",
                 "-U", "PYTHONHOME"]
    return argv


def board_command(config: EmulatedDeviceConfig, cpuinfo: Path, where: str) -> list[str]:
    """The argv that starts the emulated board's python (append its arguments), for use outside
    this device: a board behind sshd whose ``python`` is a script exec'ing this with "$@"
    (tests/netns.py). Writes the model's cpuinfo to ``cpuinfo``; DeviceError when qemu or the
    userland is missing."""
    qemu = boards.require_qemu(config.arch, where)
    root = boards.userland_dir(config.arch, config.python or "3.11") if config.arch == "arm64" else None
    if root is not None and not boards.is_complete(root):
        raise DeviceError(f"{where}: the {config.arch} userland is not built ({root}); run 'edgeship devices setup' "
                          "for an emulated board of this arch once")
    cpuinfo.write_text(cpuinfo_text(config.arch, config.cpu, os.cpu_count() or 1))
    python = sys.executable if root is None else str(boards.board_python(root, config.python or "3.11"))
    return [*enter_argv(str(cpuinfo)), *qemu_argv(qemu, config.cpu, root), python]


@DEVICES.register("emulated")
class EmulatedDevice(LocalDevice):
    kind = "emulated"

    @property
    def emulated(self) -> bool:   # profiling labels its timing/memory; the gate SKIPs latency/memory budgets
        return True

    def __init__(self, name: str, config: EmulatedDeviceConfig) -> None:
        super().__init__(name, config)   # type: ignore[arg-type]
        self._qemu: str | None = None
        self._cpuinfo: str | None = None

    @property
    def root(self) -> Path | None:
        """The arm64 userland (None for x86_64: this host's own python and packages)."""
        if self.config.arch != "arm64":
            return None
        return boards.userland_dir(self.config.arch, self.config.python or "3.11")

    @property
    def python(self) -> str:
        root = self.root
        return sys.executable if root is None else str(boards.board_python(root, self.config.python or "3.11"))

    def connect(self) -> None:
        if self._workdir is not None:
            return
        where = f"device '{self.name}'"
        self._qemu = boards.require_qemu(self.config.arch, where)
        if shutil.which("unshare") is None:
            raise DeviceError(f"{where}: 'unshare' (util-linux) not found; install it: apt-get install -y util-linux")
        root = self.root
        if root is not None and not boards.is_complete(root):
            raise DeviceError(f"{where}: the {self.config.arch} userland is not built ({root}); "
                              f"run 'edgeship devices setup {self.name}' once (downloads ~70 MB)")
        super().connect()
        cpuinfo = Path(self.workdir) / ".cpuinfo"
        cpuinfo.write_text(cpuinfo_text(self.config.arch, self.config.cpu, os.cpu_count() or 1))
        self._cpuinfo = str(cpuinfo)
        # the bind mount needs CAP_SYS_ADMIN in the new mount namespace: root has it; another
        # user gets it from a user namespace (--map-root-user) where the kernel allows those
        try:
            probe = subprocess.run(self._enter() + [sys.executable, "-I", "-c", "pass"], capture_output=True,
                                   text=True, timeout=60, check=False)
            why = (probe.stderr.strip().splitlines() or [f"exit code {probe.returncode}"])[-1]
        except (OSError, subprocess.TimeoutExpired) as exc:
            probe, why = None, str(exc)
        if probe is None or probe.returncode != 0:
            self.cleanup()
            raise DeviceError(f"{where}: cannot bind an emulated /proc/cpuinfo in a private mount namespace "
                              f"({why}); run edgeship as root, or allow unprivileged user namespaces "
                              "(sysctl kernel.unprivileged_userns_clone=1)")

    def _enter(self) -> list[str]:
        return enter_argv(str(self._cpuinfo))

    def _command(self, argv: list[str]) -> list[str]:
        if self._qemu is None or self._cpuinfo is None:
            raise DeviceError(f"device '{self.name}': not connected")
        return [*self._enter(), *qemu_argv(self._qemu, self.config.cpu, self.root), *argv]

    def run(self, argv: list[str], timeout: float, cwd: str | None = None) -> RunResult:
        res = super().run(argv, timeout, cwd)
        # qemu warns on every start about host-only features the model lists (pcid, x2apic, ...);
        # they are not the command's output, and would bury its real last line
        err = "".join(line for line in res.stderr.splitlines(keepends=True) if _TCG_WARNING not in line)
        return RunResult(res.argv, res.returncode, res.stdout, err, res.elapsed_s)

    def info(self) -> dict[str, Any]:
        found = super().info()
        found.update({"arch": self.config.arch, "emulated_cpu": self.config.cpu,
                      "cpu_class": self.config.cpu_class, "userland": str(self.root) if self.root else None})
        return found

    def cleanup(self) -> None:
        super().cleanup()
        self._cpuinfo = None
