"""Progress for long commands: a live line on a terminal (rich), plain lines in CI logs.

Commands pass ``Progress.event`` as the ``on_event`` callback of the API functions. On a TTY
one line shows the current step and an elapsed time that ticks on its own (a rich ``Live``
refreshed from a thread), cut to the terminal's width so it never wraps; when stderr is not a
TTY (CI logs, ``| cat``) every event is one plain line and no control characters are written.
On a terminal the command's title (e.g. ``export: loading the model``) shows at once, before
the first step, with the elapsed time ticking.

While a ``Progress`` is entered, what native libraries and third-party code write straight to
file descriptors 1 and 2 (TensorFlow Lite's ``INFO: Created TensorFlow Lite XNNPACK
delegate``, absl, oneDNN banners) and Python ``warnings`` go to a scratch file instead of
being glued onto the live line or into a command's output. With ``-v`` (``EDGESHIP_VERBOSE``)
those lines are shown, printed above the live line. edgeship's own lines on ``sys.stderr``
(warnings naming a device or artifact) still reach the user, above the live line too.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import tempfile
import threading
import time
import warnings
from typing import Any, TextIO

_settings = {"verbose": False, "quiet": False}


def configure(verbose: bool = False, quiet: bool = False) -> None:
    """Set by the CLI from ``-v``/``-q`` (``EDGESHIP_VERBOSE`` counts as ``-v`` too)."""
    _settings.update(verbose=verbose, quiet=quiet)


def verbose() -> bool:
    return _settings["verbose"] or os.environ.get("EDGESHIP_VERBOSE", "") not in ("", "0")


def _isatty(stream: Any) -> bool:
    return bool(getattr(stream, "isatty", lambda: False)())


def _real_fd(stream: Any) -> int | None:
    try:
        return int(stream.fileno())
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return None


class Progress:
    def __init__(self, stream: TextIO | None = None, total: int | None = None, title: str | None = None,
                 capture: bool = True) -> None:
        self.stream = stream or sys.stderr
        self.tty = _isatty(self.stream)
        self.total = total
        self.done = 0
        self.t0 = time.monotonic()
        self.title = title
        self.step = f"{title} ..." if title else ""
        self.detail = ""
        self._want_capture = capture
        self._capture: _Capture | None = None
        self._out: TextIO = self.stream
        self._live: Any = None
        self._entered = False

    # -- lifecycle -------------------------------------------------------------------------------

    def __enter__(self) -> Progress:  # noqa: PYI034  (not subclassed)
        self._entered = True
        if _settings["quiet"]:
            return self
        width = _width(self.stream) if self.tty else None
        if self._want_capture and (self.tty or not verbose()):
            self._capture = _Capture.start(self.stream, show=self.print if verbose() else None, say=self.print)
            if self._capture is not None:
                self._out = self._capture.out
        if self.tty:   # the title at once, ticking, until the first step replaces it
            self._start_live(width)
        # piped (CI logs), the title is not printed: a command that fails on bad input says so in
        # exactly one line, and the first step's line follows within seconds
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None
        if self._capture is not None:
            self._capture.stop()
            self._capture = None
            self._out = self.stream

    # -- events ----------------------------------------------------------------------------------

    def event(self, message: str) -> None:
        """Report a step. Messages starting with two spaces are details of the current step."""
        if _settings["quiet"] and self._entered:
            return
        if not message.startswith("  ") and self._counted(message):
            self.done += 1
        if not self.tty:
            print(message, file=self._out, flush=True)
            return
        if message.startswith("  "):
            self.detail = message.strip()
        else:
            self.step, self.detail = message.strip(), ""
        if self._live is None:
            self._start_live(_width(self.stream))
        self._live.refresh()

    def print(self, line: str) -> None:
        """A line of its own: above the live line on a terminal, a plain line otherwise."""
        if self._live is not None:
            self._live.console.print(line, markup=False, highlight=False, emoji=False, crop=False, soft_wrap=True)
        else:
            print(line, file=self._out, flush=True)

    @staticmethod
    def _counted(message: str) -> bool:
        return message.rstrip().endswith("...")

    # -- the live line ---------------------------------------------------------------------------

    def _start_live(self, width: int | None) -> None:
        from rich.console import Console
        from rich.live import Live

        console = Console(file=self._out, force_terminal=True, width=width or 80, highlight=False,
                          emoji=False, markup=False, soft_wrap=False)
        self._live = Live(_Line(self), console=console, refresh_per_second=4, transient=True,
                          redirect_stdout=False, redirect_stderr=False)
        self._live.start(refresh=True)

    def line(self) -> str:
        count = f"[{self.done}/{self.total}] " if self.total else ""
        bar = ""
        if self.total:
            width = 20
            filled = int(width * max(0, min(self.done - 1, self.total)) / self.total)  # steps finished
            bar = "[" + "#" * filled + "." * (width - filled) + "] "
        detail = f": {self.detail}" if self.detail else ""
        return f"{bar}{count}{self.step}{detail}"


class _Line:
    """The live line: the step cut to the width (never wrapping), the elapsed time at the right."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress

    def __rich_console__(self, console: Any, options: Any) -> Any:
        from rich.text import Text

        elapsed = f"  {time.monotonic() - self.progress.t0:6.1f}s"
        room = max(1, options.max_width - len(elapsed))
        text = Text(self.progress.line(), no_wrap=True, overflow="ellipsis")
        text.truncate(room, overflow="ellipsis", pad=True)
        text.append(elapsed)
        yield text


def _width(stream: Any) -> int:
    fd = _real_fd(stream)
    try:
        return os.get_terminal_size(fd if fd is not None else 2).columns
    except OSError:
        return 80


class _Capture:
    """fds 1 and 2 into a scratch file for the block; our own ``sys.stderr`` lines pass through.

    ``out`` is a stream on the original stderr for the live line. ``show`` (with -v) gets every
    captured line, read back from the scratch file by a thread.
    """

    def __init__(self, out: TextIO, saved: list[int], scratch: Any, show: Any) -> None:
        self.out = out
        self.saved = saved
        self.scratch = scratch
        self.show = show
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pos = 0
        self._partial = b""
        self._sys_stderr = sys.stderr
        self._lines: _Lines | None = None
        self._showwarning = warnings.showwarning

    @classmethod
    def start(cls, stream: Any, show: Any = None, say: Any = None) -> _Capture | None:
        if _real_fd(stream) != 2 or _real_fd(sys.stdout) not in (1, None):
            return None      # stderr is not the process's fd 2 (a test's StringIO): nothing to redirect
        for s in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                s.flush()
        saved = [os.dup(1), os.dup(2)]
        out = os.fdopen(os.dup(2), "w", buffering=1, encoding="utf-8", errors="replace")
        scratch = tempfile.TemporaryFile()  # noqa: SIM115  (closed in stop())
        os.dup2(scratch.fileno(), 1)
        os.dup2(scratch.fileno(), 2)
        cap = cls(out, saved, scratch, show)
        cap._lines = _Lines(say or (lambda ln: print(ln, file=out, flush=True)), cap._captured)
        sys.stderr = cap._lines
        warnings.showwarning = cap._warning
        if show is not None:
            cap._thread = threading.Thread(target=cap._tail, name="edgeship-capture", daemon=True)
            cap._thread.start()
        return cap

    def _captured(self, line: str) -> None:
        os.write(1, (line + "\n").encode("utf-8", "replace"))   # into the scratch file, like native lines

    def _warning(self, message: Any, category: Any, filename: str, lineno: int, file: Any = None,
                 line: Any = None) -> None:
        text = warnings.formatwarning(message, category, filename, lineno, line)
        os.write(1, text.encode("utf-8", "replace"))   # into the scratch file, like native lines

    def _tail(self) -> None:
        while not self._stop.wait(0.2):
            self._drain()

    def _drain(self) -> None:
        data = os.pread(self.scratch.fileno(), 1 << 20, self._pos)
        while data:
            self._pos += len(data)
            lines = (self._partial + data).split(b"\n")
            self._partial = lines.pop()
            for ln in lines:
                if ln.strip() and self.show is not None:
                    self.show(ln.decode("utf-8", "replace").rstrip())
            data = os.pread(self.scratch.fileno(), 1 << 20, self._pos)

    def stop(self) -> None:
        for s in (sys.stdout,):
            with contextlib.suppress(Exception):
                s.flush()
        if self._lines is not None:
            self._lines.flush()
            self._lines.forward = self._sys_stderr   # a handler that kept it writes to stderr from now on
        sys.stderr = self._sys_stderr
        warnings.showwarning = self._showwarning
        os.dup2(self.saved[0], 1)
        os.dup2(self.saved[1], 2)
        for fd in self.saved:
            os.close(fd)
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
            self._drain()
            if self._partial.strip() and self.show is not None:
                self.show(self._partial.decode("utf-8", "replace").rstrip())
        self.scratch.close()
        with contextlib.suppress(Exception):
            self.out.flush()
        self.out.close()


OWN_PREFIXES = ("warning: ", "note: ", "edgeship: ")


class _Lines(io.TextIOBase):
    """``sys.stderr`` while capturing: edgeship's own lines (``warning: ...``, ``note: ...``,
    ``edgeship: error: ...``) to ``say`` (above the live line); anything else a library
    prints there (torch's logging handlers, which bind sys.stderr when created) to ``other``."""

    def __init__(self, say: Any, other: Any) -> None:
        self._say = say
        self._other = other
        self._buf = ""
        self.forward: Any = None

    def writable(self) -> bool:
        return True

    def write(self, s: str) -> int:
        if self.forward is not None:
            return int(self.forward.write(s))
        self._buf += s
        *lines, self._buf = self._buf.split("\n")
        for ln in lines:
            self._line(ln)
        return len(s)

    def _line(self, line: str) -> None:
        (self._say if line.startswith(OWN_PREFIXES) else self._other)(line)

    def flush(self) -> None:
        if self.forward is not None:
            self.forward.flush()
            return
        if self._buf:
            line, self._buf = self._buf, ""
            self._line(line)
