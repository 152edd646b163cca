"""Emulated boards: which CPU models qemu-user emulates correctly, and the arm64 userland.

An emulated board runs the real aarch64 (or x86-64) builds of the runtimes under qemu-user.
Its numerics are the runtime's own kernels for that CPU; its timings are meaningless (qemu
is 100-300x slower than native). The arm64 userland (Debian's arm64 python3.11 and its
libraries, plus PyPI's aarch64 wheels of the runtimes at the host's versions) is built once
by ``edgeship devices setup NAME`` into ``<cache>/boards/<arch>-<python>-<versions>``: in a
temp dir, renamed into place whole, with a completion stamp, so a killed setup is never used.
"""

from __future__ import annotations

import fcntl
import importlib.metadata
import os
import shutil
import subprocess
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgeship.errors import DeviceError, UsageError

QEMU = {"arm64": "qemu-aarch64-static", "x86_64": "qemu-x86_64-static"}
QEMU_INSTALL = "apt-get install -y qemu-user-static"


EMULATED_TIMING = "emulated device: timing is not representative"


def timing_counts(result: dict[str, Any]) -> bool:
    """Whether a profile result's latency and memory may be gated (not from an emulated board)."""
    dev = result.get("device") or {}
    return not (dev.get("emulated") or dev.get("kind") == "emulated" or (result.get("timing") or {}).get("emulated"))


def qemu_path(arch: str) -> str | None:
    return shutil.which(QEMU[arch])


def require_qemu(arch: str, where: str) -> str:
    found = qemu_path(arch)
    if found is None:
        raise DeviceError(f"{where}: {QEMU[arch]} not found; install it: {QEMU_INSTALL}")
    return found


# ---- the arm64 userland ---------------------------------------------------------------

DEBIAN_PACKAGES = (
    "python3.11-minimal", "libpython3.11-minimal", "libpython3.11-stdlib", "libc6", "libgcc-s1", "libstdc++6",
    "zlib1g", "libexpat1", "libffi8", "libssl3", "libbz2-1.0", "liblzma5", "libsqlite3-0", "libuuid1",
    "libtinfo6", "libncursesw6", "libreadline8", "libcrypt1", "media-types",
)
DEBIAN_SOURCE = "deb http://deb.debian.org/debian bookworm main"
# runtimes pinned to the host's versions so the board's numerics compare with the host's
PINNED = ("numpy", "onnxruntime", "ai-edge-litert")
EXTRA = ("flatbuffers", "protobuf")
STAMP = ".edgeship-complete"


def cache_root() -> Path:
    base = os.environ.get("EDGESHIP_CACHE_DIR")
    return Path(base).absolute() if base else Path.home() / ".cache" / "edgeship"


def host_versions() -> dict[str, str]:
    out = {}
    for dist in PINNED:
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            raise UsageError(f"{dist} is not installed on this host; the emulated board pins its version "
                             f"to the host's: pip install {dist}") from None
    return out


def userland_dir(arch: str, python: str, versions: dict[str, str] | None = None) -> Path:
    v = versions if versions is not None else host_versions()
    tag = "-".join(f"{k}{v[k]}" for k in PINNED)
    return cache_root() / "boards" / f"{arch}-py{python}-{tag}"


def is_complete(root: Path) -> bool:
    return (root / STAMP).is_file()


def board_python(root: Path, python: str) -> Path:
    return root / "usr" / "bin" / f"python{python}"


def site_dir(root: Path) -> Path:
    return root / "site"


def setup_userland(arch: str, python: str, on_event: Callable[[str], None] = print,
                   force: bool = False) -> Path:
    """Build (once) the arm64 userland for ``python``; return its root. Idempotent."""
    if arch != "arm64":
        raise UsageError(f"emulated {arch} boards run this host's own python; no setup needed")
    if python != "3.11":
        raise UsageError(f"python '{python}' has no recipe: emulated arm64 boards use Debian 12's python 3.11")
    final = userland_dir(arch, python)
    if is_complete(final) and not force:
        on_event(f"board userland already built: {final}")
        return final
    for tool in ("apt-get", "dpkg"):
        if shutil.which(tool) is None:
            raise UsageError(f"'{tool}' not found: building the arm64 userland needs a Debian/Ubuntu host")
    final.parent.mkdir(parents=True, exist_ok=True)
    # one setup at a time per userland (two test workers, two shells): the second waits, then
    # finds the stamp; the lock dies with its process, so a killed setup never holds it
    with open(final.parent / f".{final.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if is_complete(final) and not force:
            on_event(f"board userland already built: {final}")
            return final
        return _build(final, python, on_event)


def _build(final: Path, python: str, on_event: Callable[[str], None]) -> Path:
    t0 = time.monotonic()
    # build beside the final dir (same filesystem, so the rename is atomic); a killed setup
    # leaves only a dot-dir without the stamp, which is never used and is swept here
    for stale in final.parent.glob(f".{final.name}.*.tmp"):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    try:
        _debian_root(tmp, on_event)
        _wheels(tmp, python, on_event)
        (tmp / STAMP).write_text(f"built in {time.monotonic() - t0:.0f} s\n")
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    on_event(f"board userland ready: {final} ({_du(final) / 1e6:.0f} MB, {time.monotonic() - t0:.0f} s)")
    return final


def _run(argv: list[str], what: str) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        last = (proc.stderr.strip() or proc.stdout.strip()).splitlines()[-3:]
        raise DeviceError(f"board setup: {what} failed: {' / '.join(last) or proc.returncode}")


def _debian_root(tmp: Path, on_event: Callable[[str], None]) -> None:
    on_event(f"downloading {len(DEBIAN_PACKAGES)} Debian arm64 packages (python3.11, libc, ...)...")
    apt = tmp / ".apt"
    for d in ("lists/partial", "cache/archives/partial", "etc/preferences.d", "etc/apt.conf.d", "debs"):
        (apt / d).mkdir(parents=True, exist_ok=True)
    (apt / "sources.list").write_text(DEBIAN_SOURCE + "\n")
    # a private apt state: the host's own lists, cache and sources are neither read nor changed
    opts = ["-oAPT::Architecture=arm64", "-oAPT::Architectures=arm64",
            f"-oDir::State::Lists={apt / 'lists'}", f"-oDir::Cache={apt / 'cache'}",
            f"-oDir::Etc::SourceList={apt / 'sources.list'}", f"-oDir::Etc::SourceParts={apt / 'etc' / 'none'}",
            f"-oDir::Etc::Preferences={apt / 'etc' / 'preferences'}",
            f"-oDir::Etc::PreferencesParts={apt / 'etc' / 'preferences.d'}",
            "-oDebug::NoLocking=1", "-qq"]
    _run(["apt-get", *opts, "update"], "apt-get update (arm64 package lists)")
    debs = apt / "debs"
    proc = subprocess.run(["apt-get", *opts, "download", *DEBIAN_PACKAGES], cwd=debs,
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise DeviceError(f"board setup: apt-get download failed: {proc.stderr.strip().splitlines()[-1:]}")
    files = sorted(debs.glob("*.deb"))
    on_event(f"  unpacking {len(files)} packages ({sum(f.stat().st_size for f in files) / 1e6:.0f} MB)")
    for deb in files:
        _run(["dpkg-deb", "-x", str(deb), str(tmp)], f"dpkg-deb -x {deb.name}")
    shutil.rmtree(apt)


def _wheels(tmp: Path, python: str, on_event: Callable[[str], None]) -> None:
    import sys

    pins = host_versions()
    on_event("downloading aarch64 wheels: " + ", ".join(f"{k}=={v}" for k, v in pins.items()) + "...")
    wheels = tmp / ".wheels"
    wheels.mkdir()
    platforms = ["manylinux_2_28_aarch64", "manylinux_2_27_aarch64", "manylinux_2_17_aarch64", "manylinux2014_aarch64"]
    argv = [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
            "--only-binary=:all:", "--python-version", python, "--implementation", "cp", "--dest", str(wheels)]
    for p in platforms:
        argv += ["--platform", p]
    argv += [f"{k}=={v}" for k, v in pins.items()] + list(EXTRA)
    _run(argv, "pip download of the aarch64 wheels")
    site = site_dir(tmp)
    files = sorted(wheels.glob("*.whl"))
    on_event(f"  unpacking {len(files)} wheels ({sum(f.stat().st_size for f in files) / 1e6:.0f} MB)")
    for whl in files:
        with zipfile.ZipFile(whl) as zf:
            zf.extractall(site)
    for so in site.rglob("*.so*"):    # zipfile drops the exec bit the loader does not need, but keep it tidy
        so.chmod(0o755)
    shutil.rmtree(wheels)


def _du(root: Path) -> int:
    return sum(p.lstat().st_size for p in root.rglob("*") if p.is_file() and not p.is_symlink())
