"""CLI subcommands: one module per command, each registered with ``@command``."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
    order: int


COMMANDS: dict[str, Command] = {}


def command(name: str, help: str, order: int = 50) -> Callable[[type], type]:
    """Register a class with static ``add_arguments(parser)`` and ``run(args) -> int``."""

    def deco(cls: type) -> type:
        if name in COMMANDS:
            raise ValueError(f"command '{name}' is already registered")
        COMMANDS[name] = Command(name, help, cls.add_arguments, cls.run, order)
        return cls

    return deco


def add_selection(p: argparse.ArgumentParser, device: bool = False) -> None:
    """--target/--precision (and --device) filters shared by most commands."""
    p.add_argument("--target", "-t", default="all", help="onnx, tflite, coreml, comma-separated, or all")
    p.add_argument("--precision", "-p", default="all",
                   help="fp32, fp16, int8, int8-dynamic, int8-weight, int4-weight (onnx, opt-in), comma-separated, or all")
    if device:
        p.add_argument("--device", "-d", default="local", help="a [devices.NAME] from edgeship.toml (default: local)")


def load_selection(args: argparse.Namespace):  # -> tuple[Config, targets, precisions]
    """Parse --target/--precision (errors before any file is read), then load the config."""
    from edgeship.config import load_config
    from edgeship.selection import parse_precisions, parse_targets

    targets, precisions = parse_targets(args.target), parse_precisions(args.precision)
    return load_config(args.config), targets, precisions
