"""Linux boards over SSH with the system OpenSSH client.

Using ``ssh``/``scp`` themselves means ~/.ssh/config aliases, agents, ProxyJump and known
hosts all work as the user set them up. BatchMode=yes (never prompt), a ControlMaster socket
reused for the whole session, StrictHostKeyChecking left to the user's config (ssh_options that
weaken it are refused, see ssh_policy; a host-key warning on ssh's stderr fails the step),
every remote command an argv joined with shlex, a timeout on every call, and a remote work
dir that is removed at the end even when a step failed. Nothing of edgeship is installed on
the board: the bundle carries the standalone runner.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

from edgeship.config import SSHDeviceConfig
from edgeship.devices.base import DEVICES, Device, RunResult
from edgeship.devices.ssh_policy import alarm, weakens
from edgeship.errors import DeviceError

# Steps that only move files or create a directory can be retried safely.
RETRIES = 1


@DEVICES.register("ssh")
class SSHDevice(Device):
    kind = "ssh"

    def __init__(self, name: str, config: SSHDeviceConfig) -> None:
        super().__init__(name, config)
        self._ctl_dir: str | None = None
        self._runs = 0
        self._host_key_alarm = False

    # -- plumbing ----------------------------------------------------------------------------
    @property
    def python(self) -> str:
        return self.config.python

    def _options(self) -> list[str]:
        c = self.config
        opts = [
            "-o", "BatchMode=yes",
            "-o", f"ConnectTimeout={int(max(1, c.connect_timeout_s))}",
            "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3",
        ]
        if self._ctl_dir:
            opts += ["-o", "ControlMaster=auto", "-o", f"ControlPath={self._ctl_dir}/cm", "-o", "ControlPersist=60"]
        if c.identity_file:
            opts += ["-i", str(c.identity_file), "-o", "IdentitiesOnly=yes"]
        for o in c.ssh_options:
            why = weakens(o)   # config validation refuses these already; this guards API callers
            if why:
                raise DeviceError(f"device '{self.name}': ssh_options {o.strip()!r} is refused: {why}")
            opts += ["-o", o]
        return opts

    def _ssh(self, remote_argv: list[str], timeout: float, step: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
        c = self.config
        argv = ["ssh", *self._options()]
        if c.port:
            argv += ["-p", str(c.port)]
        argv += [c.host, "--", shlex.join(remote_argv)]
        try:
            proc = subprocess.run(argv, input=stdin, capture_output=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            raise DeviceError(f"device '{self.name}': {step} timed out after {timeout:g} s") from None
        except FileNotFoundError:
            raise DeviceError("the OpenSSH client 'ssh' is not installed (apt-get install openssh-client)") from None
        # ssh goes on after a changed host key when the user's ssh config lets it (only warning
        # on stderr): that is a possible man in the middle, never a success
        warning = alarm(proc.stderr.decode(errors="replace"))
        if warning:
            self._close_master()   # no later step may reuse that connection
            self._host_key_alarm = True
            raise DeviceError(f"device '{self.name}': {step} refused: ssh says '{warning}' (ssh {c.host}); verify "
                              "the board's key fingerprint, then add or update it in known_hosts (ssh-keyscan; "
                              "ssh-keygen -R for a changed key)")
        return proc

    def _check(self, proc: subprocess.CompletedProcess[bytes], step: str) -> None:
        if proc.returncode == 255:   # ssh's own failure: unreachable, auth, host key, dropped
            msg = _last_line(proc.stderr.decode(errors="replace")) or "connection failed"
            raise DeviceError(f"device '{self.name}': {step} failed: {msg} (ssh {self.config.host})")
        if proc.returncode != 0:
            msg = _last_line(proc.stderr.decode(errors="replace")) or f"exit {proc.returncode}"
            raise DeviceError(f"device '{self.name}': {step} failed: {msg}")

    def _retry(self, fn: Any, step: str) -> Any:
        for attempt in range(RETRIES + 1):
            try:
                return fn()
            except DeviceError:
                if attempt == RETRIES or self._host_key_alarm:   # a host-key alarm is final
                    raise
                time.sleep(0.5)

    # -- Device API --------------------------------------------------------------------------
    def connect(self) -> None:
        if self._workdir is not None:
            return
        self._ctl_dir = tempfile.mkdtemp(prefix="edgeship-ssh-")
        timeout = self.config.connect_timeout_s + 10

        def mk() -> str:
            if self.config.workdir:
                argv = ["mkdir", "-p", self.config.workdir]
                self._check(self._ssh(argv, timeout, "connect"), "connect")
                return self.config.workdir
            proc = self._ssh(["mktemp", "-d", "/tmp/edgeship.XXXXXX"], timeout, "connect")
            self._check(proc, "connect")
            return proc.stdout.decode().strip()

        try:
            self._workdir = self._retry(mk, "connect")
        except BaseException:
            self._close_master()
            raise

    def push(self, local: Path, remote_name: str) -> str:
        """Copy a file or directory with tar over the ControlMaster connection."""
        dest = f"{self.workdir}/{remote_name}"
        local = Path(local)
        with tempfile.TemporaryFile() as buf:
            with tarfile.open(fileobj=buf, mode="w") as tar:
                tar.add(str(local), arcname=remote_name)
            buf.seek(0)
            data = buf.read()
        def send() -> None:
            proc = self._ssh(["tar", "-x", "-f", "-", "-C", self.workdir], 300, f"push {local.name}", stdin=data)
            self._check(proc, f"push {local.name}")
        self._retry(send, "push")
        return dest

    def run(self, argv: list[str], timeout: float, cwd: str | None = None) -> RunResult:
        env = [f"{k}={v}" for k, v in sorted(self.config.env.items())]
        self._runs += 1
        pidfile = f"{self.workdir}/.run-{self._runs}.pid"
        # sh -c '...' edgeship DIR PIDFILE ARGV...: argv is never interpolated into a string; the
        # pid file lets a timed-out run be killed on the board (killing ssh alone leaves it running)
        remote = ["sh", "-c", 'cd "$1" && echo $$ > "$2" && shift 2 && exec "$@"', "edgeship",
                  cwd or self.workdir, pidfile, *(["env", *env] if env else []), *argv]
        t0 = time.monotonic()
        # never retried: a run that got started may already have written results
        try:
            proc = self._ssh(remote, timeout, f"run {Path(argv[0]).name}")
        except DeviceError:
            try:
                self._ssh(["sh", "-c", 'kill -9 "$(cat "$1")"', "edgeship", pidfile], 15, "kill")
            except DeviceError:
                pass   # board unreachable: nothing more we can do from here
            raise
        if proc.returncode == 255:
            self._check(proc, "run")
        return RunResult(list(argv), proc.returncode, proc.stdout.decode(errors="replace"),
                         proc.stderr.decode(errors="replace"), time.monotonic() - t0)

    def pull(self, remote: str, local: Path) -> None:
        def get() -> None:
            proc = self._ssh(["cat", remote], 300, f"pull {Path(remote).name}")
            self._check(proc, f"pull {Path(remote).name}")
            tmp = Path(local).with_suffix(".part")
            tmp.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(proc.stdout)
            tmp.replace(local)
        self._retry(get, "pull")

    def info(self) -> dict[str, Any]:
        """What the runner would see on the board: a dependency-free probe, then runner ``--info``.

        The probe needs only python, so a board without numpy still reports its python and
        platform (and ``edgeship devices check`` can say what to install).
        """
        import json

        proc = self._ssh([self.python, "-c", _PROBE], 60, "info")
        self._check(proc, "info")
        try:
            env = json.loads(proc.stdout.decode().strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise DeviceError(f"device '{self.name}': could not read the board's python info") from None
        out: dict[str, Any] = {"kind": self.kind, "python": self.python, "env": env, "runtimes": {}}
        if env.get("numpy") is None or tuple(env.get("python_tuple", (0, 0))) < (3, 8):
            return out   # the runner cannot start there; check reports what is missing
        from edgeship.artifact.runner_files import RUNNER_PACKAGE, write_runner_package

        with tempfile.TemporaryDirectory(prefix="edgeship-info-") as tmp:
            write_runner_package(Path(tmp), None)
            remote = self.push(Path(tmp), "info")
        run = self.run([self.python, "-m", f"{RUNNER_PACKAGE}.runner", "--info"], 120, cwd=remote)
        if run.returncode != 0:
            raise DeviceError(f"device '{self.name}': the runner cannot start on the board: "
                              f"{_last_line(run.stderr) or f'exit {run.returncode}'}")
        try:
            found = json.loads(run.stdout)
        except ValueError:
            raise DeviceError(f"device '{self.name}': unreadable runner --info output: {run.stdout[:200]!r}") from None
        self._ssh(["rm", "-rf", "--", remote], 30, "cleanup")
        return {**out, **found, "kind": self.kind, "python": self.python}

    def cleanup(self) -> None:
        try:
            if self._workdir is not None and not self.config.workdir:
                # best effort: if the board is gone there is nothing left to undo locally
                self._ssh(["rm", "-rf", "--", self._workdir], 30, "cleanup")
            elif self._workdir is not None:
                self._ssh(["sh", "-c", 'rm -rf -- "$1"/bundle-* "$1"/info "$1"/.run-*.pid', "edgeship", self._workdir],
                          30, "cleanup")
        except DeviceError:
            pass
        finally:
            self._workdir = None
            self._close_master()

    def _close_master(self) -> None:
        if self._ctl_dir:
            try:
                subprocess.run(["ssh", "-o", f"ControlPath={self._ctl_dir}/cm", "-O", "exit", self.config.host],
                               capture_output=True, timeout=10, check=False)
            except (OSError, subprocess.TimeoutExpired):
                pass   # the master dies with its socket dir below at ControlPersist at the latest
            shutil.rmtree(self._ctl_dir, ignore_errors=True)
            self._ctl_dir = None


# Runs on any python 3: never imports numpy or a runtime, so it works on a bare board.
_PROBE = """\
import json, os, platform, socket, sys
try:
    import numpy
    np_version = numpy.__version__
except Exception:
    np_version = None
fields = {}
try:
    for line in open("/proc/cpuinfo"):
        key = line.split(":")[0].strip().lower()
        if ":" in line and key not in fields:
            fields[key] = line.split(":", 1)[1].strip()
except OSError:
    pass
# x86 lists a numeric "model" before "model name"; ARM boards name the SoC in "Hardware"
cpu = next((fields[k] for k in ("model name", "hardware", "cpu model", "model") if fields.get(k)), "")
print(json.dumps({"cpu": cpu or platform.processor() or platform.machine(), "platform": platform.platform(),
                  "machine": platform.machine(), "python": platform.python_version(),
                  "python_tuple": list(sys.version_info[:2]), "hostname": socket.gethostname(),
                  "cpu_count": os.cpu_count(), "numpy": np_version}))
"""


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else ""
