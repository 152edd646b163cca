from __future__ import annotations

import argparse

from edgeship.commands import command


@command("devices", help="list configured and adb-connected devices; 'devices check NAME' tests one, "
                         "'devices setup NAME' builds an emulated board", order=60)
class Devices:
    @staticmethod
    def add_arguments(p: argparse.ArgumentParser) -> None:
        p.add_argument("action", nargs="?", choices=["list", "check", "setup"], default="list",
                       help="list (default), check NAME, or setup NAME (build an emulated board's userland)")
        p.add_argument("name", nargs="?", help="a [devices.NAME] from edgeship.toml (for check and setup)")

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        from edgeship.config import load_config
        from edgeship.errors import UsageError

        cfg = load_config(args.config)
        if args.action == "check":
            if not args.name:
                raise UsageError("usage: edgeship devices check NAME (one of the [devices.NAME] in edgeship.toml)")
            return _check(cfg, args.name)
        if args.action == "setup":
            if not args.name:
                raise UsageError("usage: edgeship devices setup NAME (an emulated [devices.NAME] in edgeship.toml)")
            return _setup(cfg, args.name)
        if args.name:
            raise UsageError(f"unexpected argument '{args.name}'; did you mean 'edgeship devices check {args.name}'?")
        return _list(cfg)


def _list(cfg: object) -> int:
    from edgeship.devices_check import adb_devices, describe
    from edgeship.errors import DeviceError
    from edgeship.table import render

    rows = describe(cfg)   # type: ignore[arg-type]
    print(render(["device", "kind", "where"], [[r["name"], r["kind"], r["where"]] for r in rows]))
    adbs = {d.adb for d in cfg.devices.values() if d.kind == "adb"} or {"adb"}   # type: ignore[attr-defined]
    for adb in sorted(adbs):
        try:
            found = adb_devices(adb)
        except DeviceError as exc:
            print(f"\nadb: {exc}")
            continue
        if found is None:
            print(f"\nadb: '{adb}' not found (install Android SDK platform-tools to use phones)")
        elif not found:
            print(f"\nadb ({adb}): no devices attached")
        else:
            print(f"\nadb ({adb}):")
            print(render(["serial", "state", "model", "product"],
                         [[d["serial"], d["state"], d["model"], d["product"]] for d in found]))
    return 0


def _setup(cfg: object, name: str) -> int:
    from edgeship.boards import setup_userland
    from edgeship.devices.base import open_device
    from edgeship.errors import UsageError
    from edgeship.progress import Progress

    dcfg = open_device(name, cfg).config   # unknown name -> ConfigError naming the configured ones
    if dcfg.kind != "emulated":
        raise UsageError(f"device '{name}' is kind '{dcfg.kind}': only emulated boards have a setup "
                         "(see docs/devices.md)")
    if dcfg.arch != "arm64":
        print(f"device {name}: emulated {dcfg.arch} boards run this host's own python and packages "
              f"under qemu -cpu {dcfg.cpu}; nothing to set up")
        return 0
    with Progress() as progress:
        root = setup_userland(dcfg.arch, dcfg.python or "3.11", on_event=progress.event)
    print(f"device {name}: {dcfg.arch} userland at {root}")
    return 0


def _check(cfg: object, name: str) -> int:
    from edgeship.devices_check import check

    r = check(cfg, name)   # type: ignore[arg-type]
    print(f"device {r.name} ({r.kind})")
    if not r.reachable:
        print(f"  reachable: no: {r.error}")
        return 1
    print("  reachable: yes")
    if r.kind == "emulated":
        print(f"  emulated: qemu-user {r.info.get('arch')} -cpu {r.info.get('emulated_cpu')} "
              f"(class {r.info.get('cpu_class')}); numerics count, timings do not")
        print(f"  userland: {r.info.get('userland') or 'this host python'}")
    if r.error:   # reached, but the interpreter or a probe failed there
        print(f"  {r.error}")
        print("  usable: NO")
        return 1
    env = r.info.get("env") or {}
    if r.kind == "adb":
        for key in ("model", "platform", "machine", "cpu"):
            print(f"  {key}: {r.info.get(key) or 'unknown'}")
    else:
        print(f"  platform: {env.get('platform', 'unknown')} ({env.get('machine', '?')})")
        cpu = r.cpu or {}
        print(f"  cpu: {cpu.get('model') or env.get('cpu') or 'unknown'} x{env.get('cpu_count', '?')}")
        if cpu:
            print(f"  cpu class: {cpu.get('cpu_class', 'unknown')} ({cpu.get('arch')}: "
                  f"{' '.join(cpu.get('features') or []) or 'no int8-dot features'}; from {cpu.get('source')})")
        if r.declared_class:
            print(f"  declared cpu_class: {r.declared_class}")
        print(f"  python: {r.info.get('python')} {env.get('python', '?')}")
        print(f"  numpy: {env.get('numpy') or 'MISSING'}")
        for rt, state in sorted((r.info.get("runtimes") or {}).items()):
            print(f"  {rt}: {state.get('version') if state.get('available') else 'no (' + str(state.get('reason')) + ')'}")
    if r.available:
        print(f"  can run: {', '.join(r.available)}")
    for m in r.missing:
        print(f"  {m}")
    print("  usable: yes" if r.usable else "  usable: NO")
    return 0 if r.usable else 1
