"""Progress for long commands: a live line on a terminal, plain lines in CI logs.

Commands pass ``Progress.event`` as the ``on_event`` callback of the API functions. On a TTY
the current step is redrawn in place with the elapsed time; when stderr is not a TTY (CI logs,
``| cat``) every event is one plain line and no control characters are written.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    def __init__(self, stream: TextIO | None = None, total: int | None = None) -> None:
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.total = total
        self.done = 0
        self.t0 = time.monotonic()
        self._live = False

    def event(self, message: str) -> None:
        """Report a step. Messages starting with two spaces are details of the current step."""
        if not message.startswith("  ") and self._counted(message):
            self.done += 1
        elapsed = time.monotonic() - self.t0
        if not self.tty:
            print(message, file=self.stream, flush=True)
            return
        count = f"[{self.done}/{self.total}] " if self.total else ""
        width = 24
        bar = ""
        if self.total:
            filled = int(width * max(0, min(self.done - 1, self.total)) / self.total)  # steps finished
            bar = "[" + "#" * filled + "." * (width - filled) + "] "
        line = f"{bar}{count}{message.strip()}  {elapsed:5.1f}s"
        self.stream.write("\r\x1b[2K" + line[:200])
        self.stream.flush()
        self._live = True

    @staticmethod
    def _counted(message: str) -> bool:
        return message.rstrip().endswith("...")

    def close(self) -> None:
        if self.tty and self._live:
            self.stream.write("\r\x1b[2K")
            self.stream.flush()
            self._live = False

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
