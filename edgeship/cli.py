"""Command-line interface: a thin layer over the Python API.

Each subcommand lives in ``edgeship/commands/<name>.py`` and registers itself with
``@command``. Nothing heavy is imported here, so ``edgeship --help`` is instant and works
with no extras installed.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import pkgutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgeship.commands import COMMANDS
from edgeship.errors import EdgeshipError, one_line

EXIT_INTERNAL = 3
EXIT_INTERRUPTED = 130
# OS errors that mean "this path cannot be used as asked" (permissions, a read-only or full
# disk, a file where a directory should be): the user's to fix, so exit 2 with one line.
_USER_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.EISDIR,
                errno.ENOTDIR, errno.EEXIST, errno.ENOENT, errno.ENOTEMPTY, errno.ENAMETOOLONG,
                errno.ELOOP, errno.EMLINK}


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors as one line like every other error (exit 2)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"edgeship: error: {message} (see '{self.prog} --help')\n")


def _global_options(p: argparse.ArgumentParser, default: object = None) -> None:
    """Options every command takes, before or after its name (``default=SUPPRESS`` on the
    subcommand so a value given before the name is not reset by the subcommand's parser)."""
    g = p.add_argument_group("global options (before or after COMMAND)")
    g.add_argument("--config", "-c", metavar="PATH", default=default,
                   help="edgeship.toml (default: ./edgeship.toml)")
    g.add_argument("--output", "-o", metavar="DIR", default=default,
                   help="build directory for artifacts, results and reports (overrides build_dir)")
    g.add_argument("--verbose", "-v", action="count", default=default,
                   help="show converter and runtime log lines, tracebacks (same as EDGESHIP_VERBOSE=1)")
    g.add_argument("--quiet", "-q", action="store_true", default=default,
                   help="no progress; only results and errors")


EPILOG = """examples:
  edgeship init                      write a starter edgeship.toml
  edgeship export -t onnx -p int8    build artifacts into build/artifacts/
  edgeship profile                   measure them on this CPU
  edgeship gate                      judge against [[budgets]]; exit 1 on a failure
  edgeship -o /tmp/out gate -v       the same, another build dir, verbose
"""


def build_parser() -> argparse.ArgumentParser:
    import edgeship.commands as pkg

    for mod in pkgutil.iter_modules(pkg.__path__):
        importlib.import_module(f"edgeship.commands.{mod.name}")
    parser = _Parser(
        prog="edgeship",
        description="Export PyTorch models to ONNX/TFLite/CoreML, profile them on devices, gate releases on budgets.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _global_options(parser)
    parser.add_argument("--version", action="version", version=f"edgeship {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in sorted(COMMANDS, key=lambda n: COMMANDS[n].order):
        cmd = COMMANDS[name]
        epilog = f"example:\n  {cmd.example}" if cmd.example else None
        p = sub.add_parser(name, help=cmd.help, description=cmd.help, epilog=epilog,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        cmd.add_arguments(p)
        _global_options(p, default=argparse.SUPPRESS)
        p.set_defaults(_run=cmd.run)
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("edgeship")
    except PackageNotFoundError:
        return "unknown"


class _ReaderMayLeave:
    """stdout that outlives its reader: ``edgeship gate | head`` must still exit with the gate's
    code and write its reports. After the first EPIPE the rest of the output goes to /dev/null
    (Python would otherwise raise BrokenPipeError from the middle of the command, and again when
    the interpreter flushes stdout at exit)."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return int(self._stream.write(text))
        except BrokenPipeError:
            self._leave()
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            self._leave()

    def _leave(self) -> None:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, self._stream.fileno())
        os.close(devnull)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def main(argv: Sequence[str] | None = None) -> int:
    if not isinstance(sys.stdout, _ReaderMayLeave) and sys.stdout is sys.__stdout__ and sys.stdout is not None:
        sys.stdout = _ReaderMayLeave(sys.stdout)  # type: ignore[assignment]
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    verbose = bool(args.verbose) or os.environ.get("EDGESHIP_VERBOSE", "") not in ("", "0")
    saved = os.environ.get("EDGESHIP_VERBOSE")
    if args.verbose:    # the environment carries it to quiet() and to runner subprocesses
        os.environ["EDGESHIP_VERBOSE"] = str(args.verbose)
    from edgeship.ui import progress

    progress.configure(verbose=verbose, quiet=bool(args.quiet))
    try:
        return _run(args, verbose)
    finally:
        progress.configure()
        if args.verbose:
            if saved is None:
                os.environ.pop("EDGESHIP_VERBOSE", None)
            else:
                os.environ["EDGESHIP_VERBOSE"] = saved


def _run(args: argparse.Namespace, verbose: bool) -> int:
    import signal

    from edgeship.errors import note_interrupt

    # only where Ctrl-C would interrupt anyway (a background job started with SIGINT ignored stays
    # so), and only for the command: main() called in-process leaves the caller's handler as it was
    before = signal.getsignal(signal.SIGINT)
    if before is signal.default_int_handler:
        signal.signal(signal.SIGINT, note_interrupt)
    try:
        return _dispatch(args, verbose)
    finally:
        if before is signal.default_int_handler:
            signal.signal(signal.SIGINT, before)


def _dispatch(args: argparse.Namespace, verbose: bool) -> int:
    try:
        return int(args._run(args) or 0)
    except EdgeshipError as exc:
        if verbose:
            import traceback

            traceback.print_exc()
        print(f"edgeship: error: {_one_line(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("edgeship: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except OSError as exc:
        if exc.errno not in _USER_ERRNOS:
            return _internal(exc, verbose)
        if verbose:
            import traceback

            traceback.print_exc()
        print(f"edgeship: error: {_one_line(_os_error_line(exc))}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001  (a bug of ours: one line, the traceback on request)
        return _internal(exc, verbose)


def _internal(exc: BaseException, verbose: bool) -> int:
    if verbose:
        import traceback

        traceback.print_exc()
    msg = _one_line(str(exc))[:300]
    print(f"edgeship: internal error: {type(exc).__name__}: {msg} "
          "(a bug; re-run with EDGESHIP_VERBOSE=1 for the traceback)", file=sys.stderr)
    return EXIT_INTERNAL


def _one_line(msg: str) -> str:
    """A foreign error's multi-line text (torch, a compiler) joined: the error is always one line."""
    return one_line(msg)


def _os_error_line(exc: OSError) -> str:
    """'<path>: <reason>' naming the user's path, not our temp file inside it."""
    name = exc.filename2 or exc.filename   # a rename's destination is the user's path, its source our temp
    if name is None:
        return f"{exc.strerror or exc}"
    path = Path(os.fsdecode(name))
    if path.name.startswith(".") and path.name.endswith(".tmp"):
        path = path.parent   # mkstemp/mkdtemp in a directory we may not write to
    hint = {errno.EACCES: "check its permissions", errno.EPERM: "check its permissions",
            errno.EROFS: "the file system is read-only", errno.ENOSPC: "free some disk space",
            errno.EISDIR: "pass a file", errno.ENOTDIR: "a part of it is not a directory"}
    extra = f"; {hint[exc.errno]}" if exc.errno in hint else ""
    return f"{path}: {exc.strerror or exc}{extra}"


if __name__ == "__main__":
    sys.exit(main())
