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
    example: str | None = None


COMMANDS: dict[str, Command] = {}


def command(name: str, help: str, order: int = 50, example: str | None = None) -> Callable[[type], type]:
    """Register a class with static ``add_arguments(parser)`` and ``run(args) -> int``.

    ``example`` (or the class's ``EXAMPLE``) is shown at the end of the command's ``--help``.
    """

    def deco(cls: type) -> type:
        if name in COMMANDS:
            raise ValueError(f"command '{name}' is already registered")
        COMMANDS[name] = Command(name, help, cls.add_arguments, cls.run, order,
                                 example or getattr(cls, "EXAMPLE", None))
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
    from edgeship.artifact.selection import parse_precisions, parse_targets

    targets, precisions = parse_targets(args.target), parse_precisions(args.precision)
    return load_cfg(args), targets, precisions


def load_cfg(args: argparse.Namespace):  # -> Config
    """edgeship.toml from ``--config``, with ``-o/--output DIR`` as its build directory.

    The config digest stays the file's: ``-o`` moves the outputs, it does not change what
    the evidence was measured under.
    """
    from pathlib import Path

    from edgeship.config import load_config

    cfg = load_config(getattr(args, "config", None))
    out = getattr(args, "output", None)
    if out:
        cfg = cfg.model_copy(update={"build_dir": Path(out).expanduser().resolve()})
    return cfg


def add_table_options(p: argparse.ArgumentParser) -> None:
    """--wide and --json, for every command that prints a table."""
    p.add_argument("--wide", action="store_true", help="print every column at full width (default: fit the terminal)")
    p.add_argument("--json", action="store_true", help="print the results as JSON (stable keys) instead of a table")
