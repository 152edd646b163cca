"""A reader that leaves early (``edgeship ... | head``) is not an error of ours: the command
finishes, keeps its exit code and prints no traceback or internal error."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import ROOT


def _closed_reader(*args: str) -> subprocess.CompletedProcess[bytes]:
    r, w = os.pipe()
    os.close(r)     # the reader is gone before the first byte: every write is EPIPE
    try:
        return subprocess.run([sys.executable, "-m", "edgeship", *args], stdout=w, stderr=subprocess.PIPE,
                              cwd=ROOT, timeout=120, check=False)
    finally:
        os.close(w)


def test_a_table_into_a_closed_pipe_exits_0_quietly() -> None:
    r = _closed_reader("-c", str(ROOT / "edgeship.toml"), "devices")   # flushes its table mid-command
    assert r.returncode == 0, r.stderr.decode()
    assert b"BrokenPipe" not in r.stderr and b"internal error" not in r.stderr and b"Traceback" not in r.stderr


def test_a_failing_command_keeps_its_exit_code_when_the_reader_left() -> None:
    r = _closed_reader("export", "--target", "nosuch")
    assert r.returncode == 2, r.stderr.decode()
    assert b"unknown target 'nosuch'" in r.stderr and b"BrokenPipe" not in r.stderr
