"""A real OpenSSH server on loopback for the SSH device tests (no test double).

Temp host key, temp client key in authorized_keys, a random free port, and a known_hosts
file holding the host key so the client keeps StrictHostKeyChecking on. Requires the
openssh-server package (``.ci/run`` installs it).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class SSHServer:
    root: Path
    port: int
    proc: subprocess.Popen[bytes]
    user: str
    client_key: Path
    known_hosts: Path

    address: str = "127.0.0.1"

    def device_config(self, python: str, **extra: object) -> dict[str, object]:
        return {
            "kind": "ssh", "host": f"{self.user}@{self.address}", "port": self.port, "python": python,
            "identity_file": str(self.client_key),
            "ssh_options": [f"UserKnownHostsFile={self.known_hosts}", "StrictHostKeyChecking=yes",
                            "LogLevel=ERROR"],
            "connect_timeout_s": 5, **extra,
        }

    def kill(self) -> None:
        """Kill the listener and every per-connection sshd below it: connections drop."""
        for pid in [self.proc.pid, *_descendants(self.proc.pid)]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(timeout=10)


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d.name))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def start_sshd(root: Path, address: str = "127.0.0.1", port: int | None = None,
               launch: Callable[[list[str]], list[str]] = list) -> SSHServer:
    """sshd listening on ``address`` (default loopback, a free port); ``launch`` wraps its argv
    (tests/netns.py: ``host.argv``, to run it on a namespace host, where port 22 is free)."""
    root.mkdir(parents=True, exist_ok=True)
    Path("/run/sshd").mkdir(exist_ok=True)   # privilege-separation dir sshd insists on
    host_key, client_key = root / "host_ed25519", root / "client_ed25519"
    for key in (host_key, client_key):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    (root / "authorized_keys").write_text((root / "client_ed25519.pub").read_text())
    os.chmod(root / "authorized_keys", 0o600)
    port = port or free_port()
    cfg = root / "sshd_config"
    cfg.write_text(
        f"Port {port}\nListenAddress {address}\nHostKey {host_key}\nPidFile {root / 'sshd.pid'}\n"
        f"AuthorizedKeysFile {root / 'authorized_keys'}\nPubkeyAuthentication yes\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
        "PermitRootLogin prohibit-password\nMaxStartups 50\nMaxSessions 50\n"
    )
    host_pub = (root / "host_ed25519.pub").read_text().split()
    known = root / "known_hosts"
    known.write_text(f"{address if port == 22 else f'[{address}]:{port}'} {host_pub[0]} {host_pub[1]}\n")
    with open(root / "sshd.log", "wb") as log:   # the child keeps its own copy of the descriptor
        proc = subprocess.Popen(launch([SSHD, "-D", "-e", "-f", str(cfg)]), stdout=subprocess.DEVNULL, stderr=log)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"sshd exited: {(root / 'sshd.log').read_text()}")
        with socket.socket() as s:
            s.settimeout(1.0)
            if s.connect_ex((address, port)) == 0:
                break
        time.sleep(0.05)
    import getpass

    return SSHServer(root, port, proc, getpass.getuser(), client_key, known, address)
