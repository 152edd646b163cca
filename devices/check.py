"""What ``edgeship devices`` reports: configured devices, adb-discovered phones, and whether a
device can run edgeship's measurements (and what to install when it cannot)."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeship.config import Config
from edgeship.errors import DeviceError

# runtime module of the runner -> what to pip install on the board
PIP_PACKAGES = {"onnxruntime": "onnxruntime", "litert": "ai-edge-litert (or tflite-runtime on 32-bit ARM boards)",
                "coreml": "coremltools (macOS only)"}
NATIVE_TOOLS = {"tflite": "LiteRT benchmark_model", "onnx": "onnxruntime_perf_test"}


def describe(cfg: Config) -> list[dict[str, str]]:
    """Configured devices: name, kind and where they are."""
    rows = []
    for name, d in sorted(cfg.devices.items()):
        if d.kind == "ssh":
            where = f"{d.host}" + (f":{d.port}" if d.port else "")
        elif d.kind == "adb":
            where = f"serial {d.serial}" if d.serial else "the only adb device"
        elif d.kind == "emulated":
            where = f"this machine, qemu-user {d.arch} -cpu {d.cpu} ({d.cpu_class}; numerics only)"
        else:
            where = "this machine"
        if getattr(d, "timing", "representative") == "not representative":
            where += " (timing not representative: numerics only)"
        rows.append({"name": name, "kind": d.kind, "where": where})
    return rows


def adb_devices(adb: str = "adb", timeout: float = 15) -> list[dict[str, str]] | None:
    """Phones ``adb devices -l`` sees, or None when the adb client is not installed."""
    if shutil.which(adb) is None and not Path(adb).is_file():
        return None
    try:
        proc = subprocess.run([adb, "devices", "-l"], capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DeviceError(f"'{adb} devices -l' failed: {exc}") from None
    if proc.returncode != 0:
        raise DeviceError(f"'{adb} devices -l' failed: {(proc.stderr or proc.stdout).strip() or proc.returncode}")
    out = []
    for line in proc.stdout.splitlines():
        parts = line.split()
        if len(parts) < 2 or line.startswith(("List of devices", "*")):
            continue
        extra = dict(p.split(":", 1) for p in parts[2:] if ":" in p)
        out.append({"serial": parts[0], "state": parts[1], "model": extra.get("model", ""),
                    "product": extra.get("product", "")})
    return out


@dataclass
class CheckReport:
    name: str
    kind: str
    reachable: bool
    error: str | None = None
    info: dict[str, Any] = field(default_factory=dict)
    available: list[str] = field(default_factory=list)   # runtimes / native tools that work
    missing: list[str] = field(default_factory=list)     # what to install, one line each
    cpu: dict[str, Any] = field(default_factory=dict)     # runner's cpu_features + model (contract 2)
    declared_class: str | None = None                    # [devices.NAME] cpu_class, if set

    @property
    def usable(self) -> bool:
        return self.reachable and bool(self.available) and not any(m.startswith("required:") for m in self.missing)


def check(cfg: Config, name: str) -> CheckReport:
    """Reach device ``name`` and report what it can run; ConfigError for an unknown name."""
    from edgeship.devices.base import open_device

    dev = open_device(name, cfg)          # unknown name -> ConfigError (exit 2)
    report = CheckReport(name, dev.kind, reachable=False, declared_class=cfg.devices[name].cpu_class)
    try:
        with dev:
            report.reachable = True
            report.info = dev.info()
    except DeviceError as exc:
        report.error = str(exc)
        return report
    if dev.kind == "adb":
        _check_native(report, dev.config)
    else:
        _check_python(report)
    _check_cpu(report)
    return report


def _check_cpu(report: CheckReport) -> None:
    """The CPU class the device reports, against the one edgeship.toml declares for it."""
    cpu = (report.info.get("env") or {}).get("cpu")
    if isinstance(cpu, dict):
        report.cpu = cpu
    found = report.cpu.get("cpu_class")
    if report.declared_class and found and found != "unknown" and found != report.declared_class:
        report.missing.append(
            f"warning: [devices.{report.name}] cpu_class = \"{report.declared_class}\" but the device reports "
            f"{found} ({', '.join(report.cpu.get('features') or []) or 'no int8-dot features'}); "
            "export --for builds for the declared class: fix or remove the declaration")


def _check_python(report: CheckReport) -> None:
    env = report.info.get("env") or {}
    py = tuple(env.get("python_tuple") or [int(x) for x in str(env.get("python", "0.0")).split(".")[:2]])
    if py < (3, 8):
        report.missing.append(f"required: Python >= 3.8 (found {env.get('python')}); set [devices.{report.name}] python")
    if not env.get("numpy"):
        report.missing.append(f"required: numpy  ->  {report.info.get('python', 'python3')} -m pip install numpy")
    for rt, state in sorted((report.info.get("runtimes") or {}).items()):
        if state.get("available"):
            report.available.append(f"{rt} {state.get('version', '')}".strip())
        elif rt != "coreml" or "macOS" not in str(state.get("reason", "")) or env.get("platform", "").startswith("macOS"):
            report.missing.append(f"optional: {rt}  ->  pip install {PIP_PACKAGES.get(rt, rt)}")
    if not report.info.get("runtimes") and env.get("numpy"):
        report.missing.append("required: a runtime  ->  pip install onnxruntime and/or ai-edge-litert")
    elif not report.available and env.get("numpy"):
        report.missing.append("required: at least one runtime (onnxruntime or ai-edge-litert)")


def _check_native(report: CheckReport, config: Any) -> None:
    abi = report.info.get("machine") or "the phone's ABI"
    for target, tool in NATIVE_TOOLS.items():
        path = config.benchmark_binaries.get(target)
        if path is None:
            report.missing.append(f"optional: {tool} for {target}  ->  build it for {abi} and set "
                                  f"[devices.{report.name}] benchmark_binaries.{target}")
        elif not Path(path).is_file():
            report.missing.append(f"required: {path} (benchmark_binaries.{target}) does not exist")
        else:
            report.available.append(f"{target}: {path}")
