"""Command-line interface: a thin layer over the Python API.

Each subcommand lives in ``edgeship/commands/<name>.py`` and registers itself with
``@command``. Nothing heavy is imported here, so ``edgeship --help`` is instant and works
with no extras installed.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence

from edgeship.commands import COMMANDS
from edgeship.errors import EdgeshipError


def build_parser() -> argparse.ArgumentParser:
    import edgeship.commands as pkg

    for mod in pkgutil.iter_modules(pkg.__path__):
        importlib.import_module(f"edgeship.commands.{mod.name}")
    parser = argparse.ArgumentParser(
        prog="edgeship",
        description="Export PyTorch models to ONNX/TFLite/CoreML, profile them on devices, gate releases on budgets.",
    )
    parser.add_argument("--config", "-c", metavar="PATH", help="edgeship.toml (default: ./edgeship.toml)")
    parser.add_argument("--version", action="version", version=f"edgeship {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in sorted(COMMANDS, key=lambda n: COMMANDS[n].order):
        cmd = COMMANDS[name]
        p = sub.add_parser(name, help=cmd.help, description=cmd.help)
        cmd.add_arguments(p)
        p.set_defaults(_run=cmd.run)
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("edgeship")
    except PackageNotFoundError:
        return "unknown"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except EdgeshipError as exc:
        print(f"edgeship: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("edgeship: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
