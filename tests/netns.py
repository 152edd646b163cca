"""Separate hosts on one machine: Linux network + PID namespaces joined by a bridge (root only).

A ``Lab`` of N hosts: one bridge in the root namespace holding ``10.213.X.1/24`` (the uplink the
tests' clients use), and per host a named network namespace (``ip netns``) with a veth into the
bridge and its own address ``10.213.X.(10+i)``, plus its own host name (UTS namespace) and its
own PID namespace and /proc, so a
process on a host sees only that host's processes (Ray finds "its" local node by scanning
processes: with a shared PID namespace every host would find every other's). Nothing routes out:
no host has a default route, and the root namespace gets only the /24 of the bridge.

Lifetimes are bounded three ways: a host's PID 1 is ``sleep LIFETIME`` (when it ends, the kernel
kills every process of the host); ``Lab`` is a context manager that tears everything down on
exit, exceptions and Ctrl-C included; and every name carries ``eslab<pid>`` so the next ``Lab``
sweeps what a killed run left (namespaces and links whose creating process is gone).

    with Lab(["head", "w1", "w2"]) as lab:
        lab["head"].run(["ip", "-br", "addr"])      # argv, no shell, on that host
        lab["w1"].down()                             # the host vanishes: processes, link, namespace

``skip_reason()`` says why a lab cannot be built here (not root, no iproute2/util-linux).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PREFIX = "eslab"                   # every namespace, bridge and veth this kit creates starts with it
SUBNET = "10.213"                  # 10.213.X.0/24, X chosen free per lab; never routed anywhere
LIFETIME_S = 900                   # a host's processes never outlive this, even if the test runner dies
_STALE = re.compile(rf"^{PREFIX}(\d+)")
_LABS = 0


def skip_reason() -> str | None:
    """Why a lab of namespace hosts cannot be built on this machine (None: it can)."""
    if os.geteuid() != 0:
        return "network-namespace hosts need root (ip netns add, veth, bridge)"
    for tool, pkg in (("ip", "iproute2"), ("nsenter", "util-linux"), ("unshare", "util-linux")):
        if shutil.which(tool) is None:
            return f"'{tool}' not found; install it: apt-get install -y {pkg}"
    probe = f"{PREFIX}{os.getpid()}probe"
    try:
        r = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True, timeout=20, check=False)
        if r.returncode != 0:
            return f"cannot create a network namespace here: {r.stderr.strip() or r.returncode}"
    finally:
        subprocess.run(["ip", "netns", "del", probe], capture_output=True, timeout=20, check=False)
    return None


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=False)
    if check and r.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {r.stderr.strip() or r.returncode}")
    return r


def sweep(tag: str | None = None) -> list[str]:
    """Remove namespaces and links named ``eslab<pid>...`` whose pid is gone (or starting with ``tag``)."""
    def dead(name: str) -> bool:
        if tag is not None:
            return name.startswith(tag)
        m = _STALE.match(name)
        return bool(m) and not Path(f"/proc/{m.group(1)}").exists()

    removed = []
    for line in _ip("netns", "list", check=False).stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        if dead(name):
            _kill_netns(name)
            _ip("netns", "del", name, check=False)
            removed.append(name)
    for line in _ip("-o", "link", "show", check=False).stdout.splitlines():
        parts = line.split(":")
        name = parts[1].strip().split("@")[0] if len(parts) > 1 else ""
        if dead(name):
            _ip("link", "del", name, check=False)
            removed.append(name)
    return removed


def _kill_netns(ns: str) -> None:
    """SIGKILL every process in network namespace ``ns`` (bounded: a few passes)."""
    for _ in range(5):
        pids = [int(p) for p in _ip("netns", "pids", ns, check=False).stdout.split() if p.isdigit()]
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.2)


@dataclass
class Host:
    name: str
    ns: str            # the network namespace's name (ip netns exec NS ...)
    addr: str          # its address on the lab bridge
    link: str          # the veth end on the bridge (root namespace)
    init: subprocess.Popen[bytes]
    pid: int = 0       # PID 1 of the host, as the root namespace numbers it (nsenter's target)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    alive: bool = True

    def argv(self, argv: list[str]) -> list[str]:
        """``argv`` started on this host: its network, PID and mount (/proc) namespaces."""
        return ["nsenter", "-t", str(self.pid), "-n", "-p", "-m", "-u", "--", *argv]

    def run(self, argv: list[str], timeout: float = 120, env: dict[str, str] | None = None,
            check: bool = True, cwd: str | Path | None = None) -> subprocess.CompletedProcess[str]:
        r = subprocess.run(self.argv(argv), capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd,
                           check=False)
        if check and r.returncode != 0:
            raise RuntimeError(f"on host {self.name}: {' '.join(argv[:3])}... exit {r.returncode}: "
                               f"{(r.stderr.strip() or r.stdout.strip())[-2000:]}")
        return r

    def popen(self, argv: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        """A long-running process on the host (killed with the host at the latest)."""
        with open(log, "ab") as out:
            proc = subprocess.Popen(self.argv(argv), stdout=out, stderr=subprocess.STDOUT, env=env,
                                    stdin=subprocess.DEVNULL)
        self.procs.append(proc)
        return proc

    def down(self) -> None:
        """The host vanishes: every process on it is killed, then its link and namespace go."""
        if not self.alive:
            return
        self.alive = False
        if self.init.poll() is None:
            self.init.kill()               # unshare --kill-child: PID 1 dies, the kernel kills the rest
        _kill_netns(self.ns)               # anything that entered the network namespace another way
        try:
            self.init.wait(timeout=20)
        except subprocess.TimeoutExpired:
            pass
        for p in self.procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
        _ip("link", "del", self.link, check=False)
        _ip("netns", "del", self.ns, check=False)


class Lab:
    """N hosts on a private bridge; ``lab[name]`` is a Host, ``lab.uplink`` the root's address."""

    def __init__(self, names: list[str], lifetime_s: float = LIFETIME_S, say: Any = None) -> None:
        self.names = names
        self.lifetime_s = lifetime_s
        global _LABS
        _LABS += 1                  # two labs of one process (a module fixture each) never share a name
        self.tag = f"{PREFIX}{os.getpid()}{chr(ord('a') + (_LABS - 1) % 26)}"
        self.bridge = f"{self.tag}br"
        self.hosts: dict[str, Host] = {}
        self.say = say or (lambda _m: None)
        self.net = ""
        self.uplink = ""

    def __getitem__(self, name: str) -> Host:
        return self.hosts[name]

    def __enter__(self) -> Lab:  # noqa: PYI034  (the same spelling as devices/base.py)
        try:
            self.up()
        except BaseException:
            self.down()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()

    def _free_net(self) -> str:
        used = _ip("-4", "-o", "addr", "show", check=False).stdout + _ip("-4", "route", "show", "table", "all",
                                                                         check=False).stdout
        start = os.getpid() % 200 + 20
        for i in range(200):
            x = (start + i) % 250 + 1
            if f"{SUBNET}.{x}." not in used:
                return f"{SUBNET}.{x}"
        raise RuntimeError(f"no free {SUBNET}.X.0/24 for the lab bridge")

    def up(self) -> None:
        gone = sweep()
        if gone:
            self.say(f"swept leftovers of a killed lab: {', '.join(gone)}")
        if len(self.tag) + 2 + len(str(len(self.names))) > 15 or len(self.names) > 10:
            raise RuntimeError(f"interface names from {self.tag!r} would exceed 15 characters")
        self.net = self._free_net()
        self.uplink = f"{self.net}.1"
        _ip("link", "add", self.bridge, "type", "bridge")
        _ip("addr", "add", f"{self.uplink}/24", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")
        self.say(f"bridge {self.bridge} {self.uplink}/24 (root namespace)")
        for i, name in enumerate(self.names):
            self.hosts[name] = self._host(i, name)

    def _host(self, i: int, name: str) -> Host:
        ns, link, peer = f"{self.tag}-{name}", f"{self.tag}v{i}", f"{self.tag}p{i}"
        addr = f"{self.net}.{10 + i}"
        _ip("netns", "add", ns)
        _ip("link", "add", link, "type", "veth", "peer", "name", peer)
        _ip("link", "set", peer, "netns", ns)
        _ip("link", "set", link, "master", self.bridge)
        _ip("link", "set", link, "up")
        for args in (("link", "set", "lo", "up"), ("link", "set", peer, "name", "eth0"),
                     ("addr", "add", f"{addr}/24", "dev", "eth0"), ("link", "set", "eth0", "up")):
            _ip("-n", ns, *args)
        # PID 1 of the host: its own PID namespace and /proc; when it ends, the host's processes end
        init = subprocess.Popen(["ip", "netns", "exec", ns, "unshare", "--pid", "--fork", "--mount-proc",
                                 "--uts", "--kill-child", "sleep", str(int(self.lifetime_s))],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        host = Host(name, ns, addr, link, init)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not host.pid:
            kids = Path(f"/proc/{init.pid}/task/{init.pid}/children")
            try:
                found = kids.read_text().split()
            except OSError:
                found = []
            if found:
                host.pid = int(found[0])
            else:
                time.sleep(0.02)
        if not host.pid:
            raise RuntimeError(f"host {name}: its init did not start")
        host.run(["hostname", name], timeout=10)     # its own UTS namespace: nodes report their host name
        self.say(f"host {name}: netns {ns}, {addr}/24, pid namespace of {host.pid}")
        return host

    def down(self) -> None:
        for host in self.hosts.values():
            host.down()
        _ip("link", "del", self.bridge, check=False)
        sweep(self.tag)                     # anything half-made before a failure
        self.say(f"lab {self.tag} torn down")


def wait_port(addr: str, port: int, timeout: float = 15.0) -> None:
    """Until ``addr:port`` accepts a TCP connection (from the root namespace, over the bridge)."""
    import socket

    deadline = time.monotonic() + timeout
    while True:
        with socket.socket() as s:
            s.settimeout(1.0)
            if s.connect_ex((addr, port)) == 0:
                return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{addr}:{port} did not open within {timeout:g} s")
        time.sleep(0.05)


def start_board(host: Host, root: Path, cpu: str = "cortex-a76") -> tuple[Any, Path]:
    """An arm64 board on ``host``: a real sshd on its port 22 whose ``python3`` is Debian's arm64
    python under qemu-aarch64 as ``cpu`` (the userland ``edgeship devices setup`` builds).

    Returns (the SSHServer, the board's python script). The script is what a real board's
    ``python3`` is to the ssh device: ``[devices.NAME] python = "<script>"``."""
    import shlex

    from edgeship.config import EmulatedDeviceConfig
    from edgeship.devices.emulated import board_command
    from tests.sshd import start_sshd

    root.mkdir(parents=True, exist_ok=True)
    board = EmulatedDeviceConfig(kind="emulated", arch="arm64", cpu=cpu)
    argv = board_command(board, root / "cpuinfo", f"board on host {host.name}")
    python = root / "python3"
    python.write_text("#!/bin/sh\n# this board's python3: arm64 python 3.11 under qemu-user as a "
                      f"{cpu}, with its /proc/cpuinfo\nexec {shlex.join(argv)} \"$@\"\n")
    python.chmod(0o755)
    server = start_sshd(root / "sshd", address=host.addr, port=22, launch=host.argv)
    host.procs.append(server.proc)
    return server, python


# ---- a Ray lab across hosts ----------------------------------------------------------------

RAY_PORT = 6379
# A host that dies is noticed through Ray's health checks (GCS pings every raylet): Ray's
# defaults take up to ~30 s; the lab checks every second, 3 misses, so a test waits seconds.
RAY_HEALTH = {"RAY_health_check_period_ms": "1000", "RAY_health_check_timeout_ms": "1000",
              "RAY_health_check_failure_threshold": "3"}


def _ray() -> str:
    import sys

    return shutil.which("ray") or str(Path(sys.executable).with_name("ray"))


def ray_env(**extra: str) -> dict[str, str]:
    env = {**os.environ, **RAY_HEALTH, "RAY_USAGE_STATS_ENABLED": "0", **extra}
    env.pop("RAY_ADDRESS", None)
    env.pop("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", None)   # tests/test_cluster.py's loopback switch
    return env


def start_head(host: Host, temp_dir: Path) -> str:
    """``ray start --head`` on ``host``'s address (no CPUs, no devices); returns ``ADDR:6379``."""
    _ray_start(host, ["--head", "--node-ip-address", host.addr, "--port", str(RAY_PORT), "--num-cpus", "0",
                      "--include-dashboard=false", "--disable-usage-stats", "--temp-dir", str(temp_dir)])
    return f"{host.addr}:{RAY_PORT}"


def _ray_start(host: Host, args: list[str]) -> None:
    """``ray start ARGS`` on ``host``, started again when it missed Ray's fixed startup window."""
    for attempt in range(STARTUP_TRIES):
        r = host.run([_ray(), "start", *args], timeout=120, env=ray_env(), check=False)
        if r.returncode == 0:
            return
        said = (r.stderr.strip() or r.stdout.strip())[-2000:]
        if attempt == STARTUP_TRIES - 1 or _STARTUP_TIMEOUT not in said:
            raise RuntimeError(f"on host {host.name}: ray start {args[0]}... exit {r.returncode}: {said}")
        stop_ray(host)


def start_worker(host: Host, address: str, toml: Path, devices: list[str], log: Path, timeout: float = 120,
                 wait: bool = True) -> tuple[subprocess.Popen[bytes], Path]:
    """``edgeship -c TOML worker --cluster ADDRESS --devices ...`` on ``host`` (ray start --block
    under it), waiting until its node has joined (``ray start`` returns once the head registered it)."""
    import sys

    argv = [sys.executable, "-m", "edgeship", "-c", str(toml), "worker", "--cluster", address,
            "--devices", ",".join(devices), "--node-ip-address", host.addr, "--num-cpus", "1"]
    for attempt in range(STARTUP_TRIES):
        proc = host.popen(argv, log, env=ray_env())
        if not wait:
            return proc, log
        try:
            joined(proc, log, timeout)
            return proc, log
        except RuntimeError:
            if attempt == STARTUP_TRIES - 1 or not startup_timed_out(log):
                raise
            stop_ray(host)
    raise AssertionError("unreachable")


# Ray gives a new raylet a fixed 30 s to register with the head (ray/_private/node.py, not
# configurable); on a loaded 2-core machine three workers starting at once can miss it. That is
# the machine, not the lab: such a worker is stopped and started again, a bounded number of times.
STARTUP_TRIES = 3
_STARTUP_TIMEOUT = "The current node timed out during startup"


def startup_timed_out(log: Path) -> bool:
    return _STARTUP_TIMEOUT in log.read_text(errors="replace")


def stop_ray(host: Host) -> None:
    """``ray stop --force`` on ``host`` only (its own PID namespace: other hosts' nodes are untouched)."""
    host.run([_ray(), "stop", "--force"], timeout=120, env=ray_env(), check=False)


def retry_worker(host: Host, address: str, toml: Path, devices: list[str], log: Path,
                 proc: subprocess.Popen[bytes], timeout: float = 120) -> tuple[subprocess.Popen[bytes], Path]:
    """Wait for a worker started with ``wait=False``; one that missed Ray's startup window is
    started again (``start_worker``'s bounded retries)."""
    try:
        joined(proc, log, timeout)
        return proc, log
    except RuntimeError:
        if not startup_timed_out(log):
            raise
    stop_ray(host)
    return start_worker(host, address, toml, devices, log, timeout)


def joined(proc: subprocess.Popen[bytes], log: Path, timeout: float = 120) -> None:
    """Until a worker's ``ray start`` says its node joined (it returns once the head registered it)."""
    deadline = time.monotonic() + timeout
    while "Ray runtime started" not in log.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"worker did not join (exit {proc.poll()}): {log.read_text(errors='replace')[-2000:]}")
        time.sleep(0.2)


def join_client(host: Host, address: str, temp_dir: Path) -> None:
    """A submitting host joins as a node with nothing to offer (``ray start --num-cpus 0``):
    Ray's driver attaches to a node of its own host."""
    _ray_start(host, ["--address", address, "--node-ip-address", host.addr, "--num-cpus", "0",
                      "--disable-usage-stats", "--temp-dir", str(temp_dir)])

