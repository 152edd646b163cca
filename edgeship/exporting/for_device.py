"""Which CPU classes an export builds for: ``export --for DEVICE`` -> one CpuTarget per class.

A device's class, best source first: declared (``[devices.NAME] cpu_class``), detected
in-process for the local host, else asked of the device (runner ``--info`` through the same
transport ``edgeship devices check`` uses). A device that cannot be reached and declares
nothing is a usage error: guessing would build the wrong recipe silently.

Default devices: those named in ``[[budgets]]`` (not "*"), in order, else the local host.
The first device's class is the default class: its artifacts keep the plain
``<target>-<precision>`` names; other classes get ``<target>-<precision>@<class>``.
"""

from __future__ import annotations

from collections.abc import Sequence

from edgeship.config import Config
from edgeship.errors import ConfigError, DeviceError, UsageError
from edgeship.exporting.cpuclass import CpuTarget, host_target
from edgeship.runtimes.cpuinfo import CLASSES


def default_devices(cfg: Config) -> list[str]:
    named = [b.device for b in cfg.budgets if b.device != "*"]
    return list(dict.fromkeys(named)) or ["local"]


def device_target(cfg: Config, name: str) -> CpuTarget:
    """The CPU class of device ``name`` (declared, detected or asked)."""
    import difflib

    if name not in cfg.devices:
        near = difflib.get_close_matches(name, list(cfg.devices), n=1)
        hint = f"; did you mean '{near[0]}'?" if near else f" (configured: {', '.join(sorted(cfg.devices))})"
        raise UsageError(f"--for {name}: no [devices.{name}] in edgeship.toml{hint}")
    dev = cfg.devices[name]
    if dev.cpu_class is not None:
        return CpuTarget(dev.cpu_class, (), f"declared in [devices.{name}] cpu_class", (name,))
    if dev.kind == "local":
        t = host_target()
        return CpuTarget(t.cpu_class, t.features, t.known_from, (name,))
    declare = (f"declare it in edgeship.toml: [devices.{name}] cpu_class = \"...\" "
               f"(one of {', '.join(CLASSES)})")
    from edgeship.devices.base import open_device

    try:
        with open_device(name, cfg) as d:
            info = d.info()
    except (DeviceError, ConfigError) as exc:
        raise UsageError(f"device '{name}': cannot learn its CPU class ({exc}); {declare}") from None
    cpu = (info.get("env") or {}).get("cpu")
    if not isinstance(cpu, dict) or cpu.get("cpu_class") in (None, "unknown"):
        raise UsageError(f"device '{name}': it does not report a CPU class; {declare}")
    return CpuTarget(cpu["cpu_class"], tuple(cpu.get("features") or ()),
                     f"runner --info on device '{name}' ({cpu.get('source')})", (name,))


def export_targets(cfg: Config, devices: Sequence[str] | None = None) -> list[CpuTarget]:
    """One CpuTarget per distinct class of ``devices`` (default: the budgets' devices), default first."""
    names = list(dict.fromkeys(devices)) if devices else default_devices(cfg)
    by_class: dict[str, CpuTarget] = {}
    for name in names:
        t = device_target(cfg, name)
        have = by_class.get(t.cpu_class)
        if have is None:
            by_class[t.cpu_class] = t
        else:
            features = have.features or t.features
            by_class[t.cpu_class] = CpuTarget(have.cpu_class, features, have.known_from, have.devices + t.devices)
    return list(by_class.values())


def artifact_name(target: str, precision: str, cpu_class: str | None, default_class: str | None) -> str:
    """BRIEF contract 5: ``<target>-<precision>`` for the default class, ``...@<class>`` otherwise."""
    base = f"{target}-{precision}"
    return base if cpu_class is None or cpu_class == default_class else f"{base}@{cpu_class}"
