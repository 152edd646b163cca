from __future__ import annotations

import argparse

from edgeship.commands import add_table_options, command


@command("devices", help="list configured and adb-connected devices; 'devices check NAME' tests one, "
                         "'devices setup NAME' builds an emulated board", order=60,
         example="edgeship devices check pi5")
class Devices:
    @staticmethod
    def add_arguments(p: argparse.ArgumentParser) -> None:
        p.add_argument("action", nargs="?", choices=["list", "check", "setup"], default="list",
                       help="list (default), check NAME, or setup NAME (build an emulated board's userland)")
        p.add_argument("name", nargs="?", help="a [devices.NAME] from edgeship.toml (for check and setup)")
        add_table_options(p)

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        from edgeship.commands import load_cfg
        from edgeship.errors import UsageError

        cfg = load_cfg(args)
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
        return _list(cfg, args)


def _list(cfg: object, args: argparse.Namespace) -> int:
    import json

    from edgeship.devices.check import adb_devices, describe
    from edgeship.errors import DeviceError
    from edgeship.ui.table import Column, Table, show

    configured = Table([Column("name", "device"), Column("kind", "kind"), Column("where", "where", wrap=True)])
    for r in describe(cfg):   # type: ignore[arg-type]
        configured.add_row(name=r["name"], kind=r["kind"], where=r["where"])
    phones: dict[str, object] = {}
    adbs = {d.adb for d in cfg.devices.values() if d.kind == "adb"} or {"adb"}   # type: ignore[attr-defined]
    lines = []
    for adb in sorted(adbs):
        try:
            found = adb_devices(adb)
        except DeviceError as exc:
            phones[adb] = {"error": str(exc)}
            lines.append(f"\nadb: {exc}")
            continue
        phones[adb] = found
        if found is None:
            lines.append(f"\nadb: '{adb}' not found (install Android SDK platform-tools to use phones)")
        elif not found:
            lines.append(f"\nadb ({adb}): no devices attached")
        else:
            t = Table([Column("serial", "serial"), Column("state", "state"), Column("model", "model"),
                       Column("product", "product", priority=1)])
            for d in found:
                t.add_row(**{k: d[k] for k in ("serial", "state", "model", "product")})
            lines += [f"\nadb ({adb}):", t]   # a path is never wrapped
    if args.json:
        print(json.dumps({"devices": configured.records(), "adb": phones}, indent=2))
        return 0
    show(configured, wide=args.wide)
    for item in lines:
        if isinstance(item, str):
            print(item)
        else:
            show(item, wide=args.wide)
    return 0


def _setup(cfg: object, name: str) -> int:
    from edgeship.devices.base import open_device
    from edgeship.devices.boards import setup_userland
    from edgeship.errors import UsageError
    from edgeship.ui.progress import Progress

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
    from edgeship.devices.check import check

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
    elif getattr(cfg.devices[name], "timing", "representative") == "not representative":   # type: ignore[attr-defined]
        print('  timing = "not representative": numerics count, latency and memory budgets are SKIPPED')
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
