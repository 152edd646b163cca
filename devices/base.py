"""The device contract: where a bundle is pushed, run and pulled back from.

A device is a context manager: entering connects (and creates a remote work dir), leaving
cleans up even on failure. The local CPU is a device like any other, so local and remote
runs share one code path.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from edgeship.registry import Registry

DEVICES: Registry[type[Device]] = Registry("device", "edgeship.devices")


@dataclass(frozen=True)
class RunResult:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str
    elapsed_s: float


class Device(ABC):
    kind: ClassVar[str]

    def __init__(self, name: str, config: Any) -> None:
        self.name = name
        self.config = config
        self._workdir: str | None = None

    def __enter__(self) -> Device:  # noqa: PYI034  (3.8-compatible typing, no Self)
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    @property
    def workdir(self) -> str:
        """Directory on the device where bundles are pushed (valid after connect)."""
        if self._workdir is None:
            from edgeship.errors import DeviceError

            raise DeviceError(f"device '{self.name}': not connected")
        return self._workdir

    @property
    def emulated(self) -> bool:
        """Timings not representative (``timing = "not representative"``, or qemu-user): profiling
        labels them, the gate SKIPs latency and memory budgets on them (devices/boards.py)."""
        return getattr(self.config, "timing", "representative") == "not representative"

    @property
    @abstractmethod
    def python(self) -> str | None:
        """Python interpreter on the device, or None (adb: native binaries only)."""

    @abstractmethod
    def connect(self) -> None:
        """Reach the device and create the work dir; raise DeviceError naming the device."""

    @abstractmethod
    def push(self, local: Path, remote_name: str) -> str:
        """Copy a file or directory into the work dir; return its path on the device."""

    @abstractmethod
    def run(self, argv: list[str], timeout: float, cwd: str | None = None) -> RunResult:
        """Run argv (no shell) on the device; raise DeviceError on timeout/disconnect."""

    @abstractmethod
    def pull(self, remote: str, local: Path) -> None:
        """Copy a file from the device to ``local``."""

    def remove(self, *remote: str) -> None:
        """Delete files or directories in the work dir (``rm -rf``); raise DeviceError if it fails.

        The device's own ``rm``; a device whose ``run`` is not a shell on that filesystem (an
        emulated board runs everything under qemu, whose userland has no coreutils) overrides it.
        """
        from edgeship.errors import DeviceError

        res = self.run(["rm", "-rf", "--", *remote], timeout=60)
        if res.returncode != 0:
            raise DeviceError(f"device '{self.name}': rm failed: {(res.stderr or '').strip() or f'exit {res.returncode}'}")

    @abstractmethod
    def info(self) -> dict[str, Any]:
        """Platform, CPU, python/numpy and runtime availability on the device."""

    @abstractmethod
    def cleanup(self) -> None:
        """Remove the work dir and close connections; safe to call twice."""


def open_device(name: str, cfg: Any) -> Device:
    """Build the device named ``name`` from ``[devices.<name>]`` of config ``cfg``."""
    from edgeship.errors import ConfigError

    devices = cfg.devices
    if name not in devices:
        import difflib

        near = difflib.get_close_matches(name, list(devices), n=1)
        hint = f"; did you mean '{near[0]}'?" if near else ""
        raise ConfigError(
            f"unknown device '{name}' (configured: {', '.join(sorted(devices))}){hint}; add [devices.{name}] to edgeship.toml"
        )
    dcfg = devices[name]
    return DEVICES.get(dcfg.kind)(name, dcfg)
