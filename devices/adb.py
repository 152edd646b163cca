"""Android phones over adb. Phones have no python: the device runs the native benchmark
tool the user supplies (LiteRT ``benchmark_model`` for tflite, ``onnxruntime_perf_test`` for
onnx) from /data/local/tmp/edgeship/ and edgeship parses its output into the result schema.

Every adb call is an argv (no local shell); the command run on the phone's shell is joined
with shlex. Optional ``taskset`` CPU mask (pin to big or little cores) and a cooldown sleep
between runs against thermal throttling.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import time
from pathlib import Path
from typing import Any

from edgeship.config import ADBDeviceConfig
from edgeship.devices._parsers import PARSERS, ToolOutputError, fail_line
from edgeship.devices.base import DEVICES, Device, RunResult
from edgeship.errors import ConfigError, DeviceError

REMOTE_ROOT = "/data/local/tmp/edgeship"
# what the adb client itself prints when the phone goes away (not the tool's own errors)
_ADB_LOST = re.compile(r"^(adb: )?error: (device .*not found|device offline|closed|no devices/emulators found)"
                       r"|^adb: device offline", re.MULTILINE)


@DEVICES.register("adb")
class ADBDevice(Device):
    kind = "adb"

    def __init__(self, name: str, config: ADBDeviceConfig) -> None:
        super().__init__(name, config)
        self._connected = False
        self._native_runs = 0

    @property
    def workdir(self) -> str:
        return REMOTE_ROOT

    @property
    def python(self) -> None:
        return None

    def _adb(self, args: list[str], timeout: float, step: str) -> subprocess.CompletedProcess[str]:
        argv = [self.config.adb, *(["-s", self.config.serial] if self.config.serial else []), *args]
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            raise DeviceError(f"device '{self.name}': {step} timed out after {timeout:g} s") from None
        except OSError as exc:
            raise self._cannot_run(exc) from None
        if proc.returncode != 0:
            msg = (proc.stderr or proc.stdout).strip().splitlines()
            raise DeviceError(f"device '{self.name}': {step} failed: {msg[-1] if msg else f'exit {proc.returncode}'}")
        return proc

    def _cannot_run(self, exc: OSError) -> ConfigError | DeviceError:
        if isinstance(exc, FileNotFoundError):
            return DeviceError(f"device '{self.name}': the adb client '{self.config.adb}' is not installed "
                               "(Android SDK platform-tools)")
        # not executable, a directory, a binary for another machine: the config names a wrong file
        return ConfigError(f"device '{self.name}': [devices.{self.name}] adb = '{self.config.adb}' cannot be run "
                           f"({exc.strerror or exc}); point it at the adb executable (chmod +x, or install "
                           "Android SDK platform-tools)")

    def shell(self, argv: list[str], timeout: float, step: str) -> subprocess.CompletedProcess[str]:
        return self._adb(["shell", shlex.join(argv)], timeout, step)

    def connect(self) -> None:
        if self._connected:
            return
        state = self._adb(["get-state"], 15, "connect").stdout.strip()
        if state != "device":
            raise DeviceError(f"device '{self.name}': adb reports state '{state}' (authorize the phone or check the cable)")
        self.shell(["mkdir", "-p", REMOTE_ROOT], 30, "connect")
        self._connected = True

    def push(self, local: Path, remote_name: str) -> str:
        dest = f"{REMOTE_ROOT}/{remote_name}"
        self._adb(["push", str(local), dest], 300, f"push {Path(local).name}")
        return dest

    def run(self, argv: list[str], timeout: float, cwd: str | None = None) -> RunResult:
        t0 = time.monotonic()
        full = ["cd", cwd or REMOTE_ROOT]
        cmd = shlex.join(full) + " && " + shlex.join(argv)
        argv_adb = [self.config.adb, *(["-s", self.config.serial] if self.config.serial else []), "shell", cmd]
        tool = argv[2] if argv[0] == "taskset" and len(argv) > 2 else argv[0]
        try:
            proc = subprocess.run(argv_adb, capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            # killing the local adb client leaves the tool running on the phone
            try:
                self.shell(["pkill", "-f", tool], 15, "kill")
            except DeviceError:
                pass
            raise DeviceError(f"device '{self.name}': run {Path(tool).name} timed out after {timeout:g} s") from None
        except OSError as exc:
            raise self._cannot_run(exc) from None
        if proc.returncode != 0 and _ADB_LOST.search(proc.stderr or ""):
            raise DeviceError(f"device '{self.name}': run {Path(tool).name} failed: "
                              f"{fail_line(proc.stderr)} (phone disconnected?)")
        return RunResult(list(argv), proc.returncode, proc.stdout, proc.stderr, time.monotonic() - t0)

    def pull(self, remote: str, local: Path) -> None:
        self._adb(["pull", remote, str(local)], 300, f"pull {Path(remote).name}")

    def info(self) -> dict[str, Any]:
        props = {}
        for key in ("ro.product.model", "ro.product.cpu.abi", "ro.build.version.release", "ro.soc.model"):
            props[key] = self.shell(["getprop", key], 15, "info").stdout.strip()
        return {"kind": self.kind, "model": props["ro.product.model"], "machine": props["ro.product.cpu.abi"],
                "platform": f"Android {props['ro.build.version.release']}", "cpu": props["ro.soc.model"],
                "python": None, "tools": {k: str(v) for k, v in self.config.benchmark_binaries.items()}}

    def cleanup(self) -> None:
        if self._connected:
            try:
                self.shell(["rm", "-rf", REMOTE_ROOT], 30, "cleanup")
            except DeviceError:
                pass   # phone gone: nothing local to undo
            self._connected = False

    # -- native profiling --------------------------------------------------------------------
    def native_argv(self, target: str, tool: str, model: str, cfg: Any, min_runs: int | None) -> list[str]:
        p = cfg.profile
        runs = str(min_runs if min_runs is not None else p.min_runs)
        prefix = ["taskset", self.config.cpu_mask] if self.config.cpu_mask else []
        if target == "tflite":
            return [*prefix, tool, f"--graph={model}", f"--num_threads={p.threads}", f"--num_runs={runs}",
                    f"--min_secs={p.min_seconds:g}", f"--max_secs={p.max_seconds:g}",
                    f"--warmup_runs={p.warmup_runs}", f"--warmup_min_secs={p.warmup_seconds:g}",
                    "--report_peak_memory_footprint=true"]
        # -I: generated inputs (no test_data_set dir on the phone); -s: print min/max/percentiles
        return [*prefix, tool, "-e", "cpu", "-m", "times", "-r", runs, "-x", str(p.threads), "-I", "-s", model]

    def profile_native(self, ref: Any, cfg: Any, min_runs: int | None = None) -> dict[str, Any]:
        target = ref.manifest.target
        binary = self.config.benchmark_binaries.get(target)
        if binary is None or target not in PARSERS:
            return {"schema": "edgeship.result/1", "status": "skipped", "timing": None, "memory": None,
                    "skip_reason": f"no native benchmark tool for {target} on adb device '{self.name}' "
                                   f"(set [devices.{self.name}] benchmark_binaries.{target})",
                    "runtime": {"name": ref.manifest.runtime}, "env": {}, "settings": {}}
        binary = Path(binary)
        if not binary.is_file():
            raise ConfigError(f"key 'devices.{self.name}.benchmark_binaries.{target}': {binary} not found")
        tool = self.push(binary, binary.name)
        self.shell(["chmod", "755", tool], 30, "chmod")
        model = self.push(ref.model_path, f"{ref.name}-{ref.manifest.model_file}")
        if self.config.cooldown_s and self._native_runs:
            time.sleep(self.config.cooldown_s)   # let the SoC cool down between runs (thermal throttling)
        self._native_runs += 1
        argv = self.native_argv(target, tool, model, cfg, min_runs)
        run = self.run(argv, cfg.profile.timeout_s)
        try:
            parsed = PARSERS[target](run.stdout + "\n" + run.stderr)
        except ToolOutputError as exc:
            raise DeviceError(f"device '{self.name}': run {binary.name} on {ref.name}: {exc}") from None
        if run.returncode != 0:
            raise DeviceError(f"device '{self.name}': run {binary.name} on {ref.name}: exited {run.returncode} "
                              f"after printing its results ({fail_line(run.stderr)})")
        self.shell(["rm", "-f", model], 30, "cleanup")
        info = self.info()
        return {
            "schema": "edgeship.result/1", "status": "ok", "skip_reason": None,
            "runtime": {"name": binary.name, "version": "native", "threads": cfg.profile.threads,
                        "cpu_mask": self.config.cpu_mask},
            "settings": {"threads": cfg.profile.threads, "warmup_runs": cfg.profile.warmup_runs,
                         "warmup_seconds": cfg.profile.warmup_seconds, "min_runs": min_runs or cfg.profile.min_runs,
                         "min_seconds": cfg.profile.min_seconds, "max_seconds": cfg.profile.max_seconds,
                         "cooldown_s": self.config.cooldown_s, "tool_argv": argv},
            "env": {"cpu": info["cpu"], "platform": info["platform"], "machine": info["machine"],
                    "python": None, "hostname": info["model"], "cpu_count": None},
            **parsed,
        }
