"""Atomic writes: a file or directory is either absent, the old one, or the complete new one.

Everything edgeship writes (artifacts, results, reports) goes through here so a crash or
Ctrl-C never leaves a half-written file that a later run would trust.

Directories (artifacts, report sets) are versioned: the content lives in a hidden
``.<name>.v<uuid>/`` and ``<name>`` is a symlink to it. A new version is written beside the
old one and published by ``os.replace`` of a temp symlink over ``<name>``, which is atomic:
a reader always sees the old or the new version, a crash at any point leaves the old one, and
two writers racing both succeed (the last swap wins). A writer holds an flock on its version
directory until the swap, so the next run can tell a dead writer's leftovers (unlocked) from a
live one's and sweeps them. Files are written to a temp file and renamed; everything ends up
with the permissions the umask asks for (0644/0755 under 022), not mkstemp's 0600.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import re
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from edgeship.untrusted import dumps

# Leftovers older than this process are candidates for sweeping (if nobody holds their lock).
RUN_STARTED = time.time()
# ".<name>.<8 random chars>.tmp" (mkstemp/mkdtemp, also older edgeship's temp dirs), our temp
# symlinks ".<name>.<hex>.tmp", and older edgeship's ".<name>.old-<pid>" trash directories
_TMP_RE = re.compile(r"^\..+\.(?:[a-z0-9_]{8}|[0-9a-f]{32})\.tmp$|^\..+\.old-\d+$")
_VERSION_RE = re.compile(r"^\..+\.v[0-9a-f]{32}$")
SET_DIR = ".report-set"

_umask_lock = threading.Lock()
_umask: int | None = None


def umask() -> int:
    """The process umask, read once (from /proc where possible: os.umask() is a write)."""
    global _umask
    if _umask is None:
        with _umask_lock:
            if _umask is None:
                _umask = _read_umask()
    return _umask


def _read_umask() -> int:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    old = os.umask(0o022)   # no /proc (macOS): set and restore once, under the lock
    os.umask(old)
    return old


def file_mode() -> int:
    return 0o666 & ~umask()


def dir_mode() -> int:
    return 0o777 & ~umask()


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temp file in the same directory and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sweep(path.parent, wait=False)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)   # a live temp file is never swept
            fh.write(data)
            fh.flush()
            os.fchmod(fh.fileno(), file_mode())
            os.fsync(fh.fileno())
            os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_text_atomic(path: Path, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: Path, obj: Any) -> None:
    """Strict JSON (a non-finite number is null): edgeship reads its files back as untrusted
    input (edgeship.untrusted), which refuses NaN and Infinity."""
    write_text_atomic(path, dumps(obj, indent=2, sort_keys=False) + "\n")


@contextlib.contextmanager
def _locked(path: Path, blocking: bool = True) -> Iterator[bool]:
    """flock ``path`` (a directory or file); yields False if non-blocking and held elsewhere."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        yield False
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


@contextlib.contextmanager
def exclusive(directory: Path) -> Iterator[None]:
    """Hold ``directory``'s lock (creating it): a read-modify-write of a file in it by
    concurrent edgeship processes (two ``profile`` runs appending to one history) loses nothing."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    with _locked(directory):
        yield


def _remove(p: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink()


def sweep(directory: Path, wait: bool = True) -> list[Path]:
    """Remove what killed runs left in ``directory``; returns what was removed.

    Version directories no symlink here points to and nobody holds locked, and temp files,
    temp symlinks and old temp dirs that are older than this run and not locked. Holds the
    directory's lock, so a writer between creating and locking its version is never swept.
    """
    with _locked(Path(directory), blocking=wait) as got:
        # not got: locked by a writer (maybe this process, writing into its own version
        # directory); that writer sweeps, or the next run does
        return _sweep_locked(Path(directory)) if got else []


def _sweep_locked(directory: Path) -> list[Path]:
    try:
        entries = [e for e in os.scandir(directory) if e.name.startswith(".")]
        live = {os.readlink(e.path) for e in os.scandir(directory) if e.is_symlink()}
    except OSError:
        return []
    removed = []
    for e in entries:
        p = Path(e.path)
        try:
            if _VERSION_RE.match(e.name):
                if e.name in live or e.is_symlink():
                    continue
            elif _TMP_RE.match(e.name):
                if e.stat(follow_symlinks=False).st_mtime >= RUN_STARTED:
                    continue
            else:
                continue
            if e.is_symlink():
                _remove(p)
                removed.append(p)
                continue
            with _locked(p, blocking=False) as got:
                if got:
                    _remove(p)
                    removed.append(p)
        except OSError:
            continue   # vanished or unreadable: another run is sweeping it
    return removed


@contextlib.contextmanager
def atomic_directory(final: Path, hold_lock: bool = False) -> Iterator[Path]:
    """Yield a fresh version directory for ``final``; on success ``final`` points to it.

    On any exception the version directory is removed and ``final`` is left untouched (an
    older complete artifact stays; no partial one appears). ``hold_lock``: hold the parent's
    lock from before the yield to the swap, not only around them, so what the caller reads of
    the current version and writes into the new one is a read-modify-write no other writer in
    the parent interleaves with (publish_set's carry-over); the caller must not take that lock
    again meanwhile (flock does not nest).
    """
    final = Path(final)
    parent = final.parent
    parent.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as held:
        held.enter_context(_locked(parent))   # nobody sweeps our version dir between mkdir and flock
        _sweep_locked(parent)
        version = parent / f".{final.name}.v{uuid.uuid4().hex}"
        os.mkdir(version)   # mode 0o777 & ~umask
        vfd = os.open(version, os.O_RDONLY)
        fcntl.flock(vfd, fcntl.LOCK_EX)
        if not hold_lock:
            held.close()
        try:
            try:
                yield version
            except BaseException:
                shutil.rmtree(version, ignore_errors=True)
                raise
            with contextlib.nullcontext() if hold_lock else _locked(parent):
                _swap_link(final, version.name)
                os.close(vfd)
                vfd = -1
                _sweep_locked(parent)
        finally:
            if vfd >= 0:
                os.close(vfd)


def _swap_link(final: Path, target: str) -> None:
    """Atomically make ``final`` a symlink to ``target`` (a sibling name)."""
    parent = final.parent
    if final.is_dir() and not final.is_symlink():
        # a plain directory (older edgeship, or a copy): becomes a version, then the link
        # replaces it; this one-time migration has a moment without ``final``
        os.rename(final, parent / f".{final.name}.v{uuid.uuid4().hex}")
    link = parent / f".{final.name}.{uuid.uuid4().hex}.tmp"
    os.symlink(target, link)
    try:
        os.replace(link, final)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(link)
        raise


def publish_set(out_dir: Path, files: Mapping[str, bytes]) -> list[Path]:
    """Publish ``files`` (name -> bytes) in ``out_dir`` all together or not at all.

    They are written into one version of ``out_dir/.report-set`` and each name is a symlink
    ``name -> .report-set/name``, so one atomic swap replaces the whole set. Names of a
    previous set that this call does not write are carried over (their links keep working).
    OSError (e.g. IsADirectoryError for a name that is a directory) before anything changed.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in files:
        p = out_dir / name
        if p.is_dir() and not p.is_symlink():
            raise IsADirectoryError(errno.EISDIR, "is a directory", str(p))
    # the carry-over is a read-modify-write of the set: read under out_dir's lock, held until
    # the swap, so two publishers (two gates, a gate and a report) never drop each other's
    # names; read from the set itself, whose names are complete at the swap (the links below
    # follow after it, outside the lock)
    with atomic_directory(out_dir / SET_DIR, hold_lock=True) as version:
        carry: dict[str, bytes] = {}
        current = out_dir / SET_DIR
        for e in os.scandir(current) if current.is_dir() else ():
            if e.name not in files and e.is_file(follow_symlinks=False):
                with contextlib.suppress(OSError):
                    carry[e.name] = Path(e.path).read_bytes()
        for name, data in {**carry, **files}.items():
            (version / name).write_bytes(data)
            os.chmod(version / name, file_mode())
    for name in files:
        p = out_dir / name
        if not (p.is_symlink() and os.readlink(p) == f"{SET_DIR}/{name}"):
            _swap_link(p, f"{SET_DIR}/{name}")
    return [out_dir / name for name in files]


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def tree_files(root: Path) -> list[Path]:
    """Every regular file below ``root`` (a file or a directory such as .mlpackage), sorted."""
    root = Path(root)
    if root.is_file():
        return [root]
    return sorted(p for p in root.rglob("*") if p.is_file())


def tree_size(root: Path) -> int:
    return sum(p.stat().st_size for p in tree_files(root))
