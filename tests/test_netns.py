"""Devices that are really somewhere else: hosts on network namespaces (tests/netns.py).

One lab of six hosts on a private bridge (root only; CI=true fails where it cannot be built):

- ``board``: a real sshd on its port 22 whose python3 is Debian's arm64 python under
  qemu-aarch64 as a Cortex-A76 (the userland ``edgeship devices setup`` builds). This host (the
  root namespace) reaches it as ``[devices.board] kind = "ssh"`` over the bridge, with strict
  host-key checking, and gates the demo's INT8 on the numerics measured there.
- ``head``: ``ray start --head`` on its own address; ``w1``/``w2``/``w3``: ``edgeship worker``
  (``ray start --address``) advertising boxa/boxb/boxc; ``ci``: the submitter, joined with
  ``ray start --num-cpus 0``. ``w3`` is torn down mid-run.

No traffic leaves the bridge: the hosts have no default route (tests/netns.py).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from tests import netns
from tests.conftest import ROOT, cli_project, missing_component, require_tool

HOSTS = ["board", "head", "w1", "w2", "w3", "ci"]
WORKERS = {"w1": "boxa", "w2": "boxb", "w3": "boxc"}
PY = sys.executable


def _budgets(extra: str) -> dict[str, str]:
    """The demo edgeship.toml's example budgets replaced (the test names its own)."""
    text = (ROOT / "edgeship.toml").read_text()
    return {text[text.index("# Example budgets"):]: extra}


class _Steps:
    """Prints how long each step took (-s shows them; qemu makes every runner start slow)."""

    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self.t = time.monotonic()
        self.capsys = capsys

    def __call__(self, what: str) -> None:
        now = time.monotonic()
        with self.capsys.disabled():
            print(f"{what}: {now - self.t:.1f} s")
        self.t = now


def _toml_table(name: str, table: dict[str, Any]) -> str:
    return f"\n[devices.{name}]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in table.items())


@pytest.fixture(scope="module")
def lab():
    why = netns.skip_reason()
    if why:
        missing_component(why)
    require_tool("sshd", "apt-get install -y openssh-server", "/usr/sbin/sshd")
    root = Path(tempfile.mkdtemp(prefix="esl"))      # short: Ray's socket paths live under it
    try:
        with netns.Lab(HOSTS) as hosts:
            yield hosts, root
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def board(lab):
    """(device table, sshd) of the arm64 board on host 'board'."""
    from tests.test_emulated import require_emulation

    require_emulation("arm64")
    require_tool("apt-get", "a Debian/Ubuntu host")
    from edgeship.devices.boards import setup_userland

    setup_userland("arm64", "3.11", on_event=lambda m: None)
    hosts, root = lab
    server, python = netns.start_board(hosts["board"], root / "board")
    return server.device_config(str(python), timing="not representative"), server


@pytest.fixture(scope="module")
def ray_lab(lab):
    """The head's address, with w1/w2/w3 advertising boxa/boxb/boxc and ci joined."""
    try:
        import ray  # noqa: F401
    except ImportError:
        missing_component("ray is not installed; install it: pip install 'edgeship[cluster]'")
    hosts, root = lab
    address = netns.start_head(hosts["head"], root / "ray-head")
    started = []
    for host, device in WORKERS.items():     # the three join at once: each `ray start` takes seconds
        (root / host).mkdir()
        toml = cli_project(root / host, append=f'\n[devices.{device}]\nkind = "local"\n')
        proc, log = netns.start_worker(hosts[host], address, toml, [device], root / f"{host}.log", wait=False)
        started.append((hosts[host], toml, [device], log, proc))
    netns.join_client(hosts["ci"], address, root / "ray-ci")
    for host_, toml, devices, log, proc in started:
        netns.retry_worker(host_, address, toml, devices, log, proc)
    return address


def _edgeship(host: netns.Host, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return host.run([PY, "-m", "edgeship", *args], timeout=timeout, check=False, env=netns.ray_env())


# ---- the hosts --------------------------------------------------------------------------------

def test_hosts_are_separate(lab) -> None:
    """Own address, host name and processes per host; reachable from here over the bridge only."""
    import socket

    hosts, _ = lab
    a, b = hosts["w1"], hosts["w2"]
    assert len({h.addr for h in hosts.hosts.values()}) == len(HOSTS)
    assert a.run(["hostname"]).stdout.strip() == "w1"
    own = a.run(["ip", "-4", "-o", "addr"]).stdout
    assert a.addr in own and b.addr not in own
    assert "default" not in a.run(["ip", "route"]).stdout           # nothing routes off the bridge
    # a listener on w2 is reached from w1 over the bridge, and is not on w1's own loopback
    b.popen([PY, "-m", "http.server", "--bind", b.addr, "8765"], Path(tempfile.mkdtemp()) / "http.log")
    netns.wait_port(b.addr, 8765)
    fetch = f"import urllib.request as u; print(u.urlopen('http://{b.addr}:8765/', timeout=5).status)"
    assert a.run([PY, "-c", fetch]).stdout.strip() == "200"
    with socket.socket() as s:
        s.settimeout(2)
        assert s.connect_ex((b.addr, 8765)) == 0                     # the root namespace: via the bridge
    assert "http.server" not in a.run(["ps", "-eo", "args"]).stdout  # w1 sees only its own processes


# ---- an arm64 board behind SSH ----------------------------------------------------------------

def test_int8_on_an_arm64_board_over_ssh(lab, board, demo_project, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    """export --for, eval --device and gate against a board that is a host of its own: INT8
    numerics measured on its aarch64 runtimes are judged; its latency and memory are SKIPPED
    because the board declares itself emulated, never PASS."""
    from edgeship.cli import main

    table, server = board
    hosts, _ = lab
    shutil.copytree(demo_project[0].build / "artifacts", tmp_path / "build" / "artifacts")
    budgets = ('[[budgets]]\ndevice = "board"\ntarget = "onnx"\nprecision = "int8"\nlatency_ms = { p90 = 1000.0 }\n'
               'peak_memory_mb = 4000\nmax_accuracy_drop = 0.005\nmin_cosine = 0.999\n')
    # one profile round: each runner start under qemu costs seconds, and its timing is not gated anyway
    toml = cli_project(tmp_path, {**_budgets(budgets), "rounds = 2": "rounds = 1"},
                       append=_toml_table("board", table))
    cfg = ["--config", str(toml)]
    step = _Steps(capsys)
    assert table["host"] == f"root@{hosts['board'].addr}" or table["host"].endswith(f"@{hosts['board'].addr}")

    assert main([*cfg, "devices", "check", "board"]) == 0
    out = capsys.readouterr().out
    assert "cpu class: arm64-dotprod" in out and "(aarch64)" in out and "usable: yes" in out, out
    assert 'timing = "not representative"' in out
    step("devices check")

    assert main([*cfg, "export", "--for", "board", "--target", "onnx", "--precision", "int8"]) == 0
    built = json.loads((tmp_path / "build" / "artifacts" / "digits_cnn" / "onnx-int8" / "manifest.json").read_text())
    assert built["built_for"]["cpu_class"] == "arm64-dotprod", built["built_for"]
    step("export --for board")

    # one chunk: every chunk is an ssh round trip and a python start under qemu
    assert main([*cfg, "eval", "--device", "board", "--precision", "int8", "--target", "onnx", "--chunk", "10000"]) == 0
    entry = json.loads((tmp_path / "build" / "reports" / "eval.json").read_text())["entries"]["board/onnx-int8"]
    assert entry["status"] == "ok" and entry["cpu"]["cpu_class"] == "arm64-dotprod", entry
    assert entry["cosine_mean"] >= 0.999 and entry["accuracy_drop"] <= 0.005, entry
    step("eval --device board")

    assert main([*cfg, "profile", "--device", "board", "--precision", "int8", "--target", "onnx"]) == 0
    result = json.loads((tmp_path / "build" / "results" / "board" / "onnx-int8.json").read_text())
    assert result["device"] == {"name": "board", "kind": "ssh", "emulated": True}
    assert result["env"]["machine"] == "aarch64" and result["timing"]["emulated"] is True
    assert "board (emulated)" in capsys.readouterr().out
    step("profile --device board")

    code = main([*cfg, "gate", "--no-remeasure"])
    out = capsys.readouterr().out
    checks = json.loads((tmp_path / "build" / "reports" / "report.json").read_text())["checks"]
    verdicts = {c["metric"]: (c["verdict"], c["detail"]) for c in checks}
    assert code == 0, out
    assert {c["device"] for c in checks} == {"board"}
    assert verdicts["cosine_mean"][0] == verdicts["accuracy_drop"][0] == "PASS", verdicts
    assert "on board" in verdicts["cosine_mean"][1]
    for metric in ("latency_p90_ms", "peak_memory_mb"):
        assert verdicts[metric] == ("SKIPPED", "emulated device: timing is not representative"), verdicts
    assert server.proc.poll() is None
    step("gate")


def test_timing_declaration_decides_not_the_transport(demo_project, tmp_path: Path) -> None:
    """``timing = "not representative"`` on any device kind: profiled, labelled, latency and
    memory SKIPPED with the reason (the board above: numerics judged); a typo is a config error naming the key."""
    from edgeship.devices.check import describe
    from edgeship.errors import ConfigError
    from edgeship.gating.judge import gate
    from edgeship.measure.profile import profile
    from edgeship.types import Precision, Target
    from tests.conftest import make_config, project_copy

    budgets = [{"device": "*", "target": "onnx", "precision": "fp32", "latency_ms": {"p90": 1e6},
                "peak_memory_mb": 1e6, "size_kb": 1e6}]
    devices = {"emu": {"kind": "local", "timing": "not representative"}, "real": {"kind": "local"}}
    cfg = project_copy(tmp_path, demo_project[0], devices=devices, budgets=budgets)
    for name in devices:
        (result,) = profile(cfg, name, (Target.ONNX,), (Precision.FP32,), min_runs=3, min_seconds=0.0)
        assert bool(result["device"].get("emulated")) is (name == "emu")
    verdicts = {(c.check.device, c.check.metric): (c.verdict.value, c.detail)
                for c in gate(cfg, remeasure=lambda d, a: []).checks}
    reason = "emulated device: timing is not representative"
    assert verdicts[("emu", "latency_p90_ms")] == verdicts[("emu", "peak_memory_mb")] == ("SKIPPED", reason)
    assert verdicts[("real", "latency_p90_ms")][0] in ("PASS", "MARGINAL")
    assert "timing not representative" in next(r["where"] for r in describe(cfg) if r["name"] == "emu")
    with pytest.raises(ConfigError, match=r"devices\.emu\.timing"):
        make_config(tmp_path, devices={"emu": {"kind": "ssh", "host": "pi", "timing": "emulated"}})


# ---- a Ray lab across hosts -------------------------------------------------------------------

def _submitter(root: Path, demo_project: Any, budgets: str) -> Path:
    """The submitting project (artifacts + eval.json of the demo), on the shared filesystem."""
    shutil.copytree(demo_project[0].build / "artifacts", root / "build" / "artifacts")
    tables = "".join(f'\n[devices.{d}]\nkind = "local"\n' for d in WORKERS.values())
    return cli_project(root, _budgets(budgets), append=tables)


def test_profile_eval_gate_across_hosts(lab, ray_lab, demo_project, tmp_path: Path) -> None:
    """From host ci: profile --cluster on two workers' devices, eval --device --cluster, then
    gate --cluster; each device measured on the host that advertises it."""
    hosts, _ = lab
    budgets = ('[[budgets]]\ndevice = "box[ab]"\ntarget = "onnx"\nprecision = "fp32"\nlatency_ms = { p90 = 1000.0 }\n'
               '\n[[budgets]]\ndevice = "boxa"\ntarget = "onnx"\nprecision = "fp32"\nmin_cosine = 0.9999\n')
    toml = _submitter(tmp_path, demo_project, budgets)
    cfg = ["-c", str(toml)]
    ci = hosts["ci"]

    r = _edgeship(ci, *cfg, "profile", "--cluster", ray_lab, "--device", "boxa,boxb", "--target", "onnx",
                  "--precision", "fp32")
    assert r.returncode == 0, r.stderr
    for device, host in (("boxa", "w1"), ("boxb", "w2")):
        res = json.loads((tmp_path / "build" / "results" / device / "onnx-fp32.json").read_text())
        assert res["device"]["node"]["ip"] == hosts[host].addr and res["device"]["node"]["host"] == host, res["device"]
        assert f"device {device}: done on node {hosts[host].addr}" in r.stderr

    r = _edgeship(ci, *cfg, "eval", "--device", "boxa", "--cluster", ray_lab, "--target", "onnx", "--precision", "fp32")
    assert r.returncode == 0, r.stderr
    entry = json.loads((tmp_path / "build" / "reports" / "eval.json").read_text())["entries"]["boxa/onnx-fp32"]
    assert entry["status"] == "ok" and entry["cosine_min"] > 0.9999, entry

    r = _edgeship(ci, *cfg, "gate", "--cluster", ray_lab, "--no-remeasure")
    assert r.returncode == 0, r.stdout + r.stderr
    checks = json.loads((tmp_path / "build" / "reports" / "report.json").read_text())["checks"]
    got = {(c["device"], c["metric"]): c["verdict"] for c in checks}
    assert got == {("boxa", "latency_p90_ms"): "PASS", ("boxb", "latency_p90_ms"): "PASS",
                   ("boxa", "cosine_mean"): "PASS"}, got
    assert f"done on node {hosts['w1'].addr}" in r.stderr and f"done on node {hosts['w2'].addr}" in r.stderr


def test_worker_host_torn_down_mid_run(lab, ray_lab, demo_project, tmp_path: Path) -> None:
    """w3's namespace goes away while boxc measures: one error naming device, node and step,
    within seconds; boxa's result is written; nothing hangs."""
    hosts, _ = lab
    toml = _submitter(tmp_path, demo_project, "")
    slow = toml.read_text().replace("warmup_seconds = 0.05", "warmup_seconds = 20.0\nmax_runs = 0")
    assert slow != toml.read_text()
    toml.write_text(slow)
    log = tmp_path / "profile.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(hosts["ci"].argv([PY, "-m", "edgeship", "-c", str(toml), "profile", "--cluster",
                                                  ray_lab, "--device", "boxc,boxa", "--target", "onnx",
                                                  "--precision", "fp32"]),
                                stdout=out, stderr=subprocess.STDOUT, env=netns.ray_env())
    try:
        deadline = time.monotonic() + 120
        while "device boxc: submitted" not in log.read_text(errors="replace"):
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text(errors="replace")
            time.sleep(0.2)
        time.sleep(3.0)              # boxc's task is in its 20 s warm-up on w3
        w3 = hosts["w3"]
        t0 = time.monotonic()
        w3.down()
        code = proc.wait(timeout=90)
        waited = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
    text = log.read_text(errors="replace")
    errors = [ln for ln in text.splitlines() if ln.startswith("edgeship: error:")]
    assert code == 2, text
    assert len(errors) == 1, text
    assert f"device 'boxc' on node {w3.addr} (" in errors[0] and "step 'run'" in errors[0], errors
    assert "Traceback" not in text
    # the submitter noticed within seconds of the host going (Ray's health checks), not at the end of boxa's run
    print(f"w3 down -> error after {waited:.1f} s")
    assert waited < 60
    assert (tmp_path / "build" / "results" / "boxa" / "onnx-fp32.json").is_file()
    assert not (tmp_path / "build" / "results" / "boxc").exists()


@pytest.mark.parametrize("case", ["unreachable", "not-ray", "not-a-node"])
def test_bad_cluster_address_fails_fast(lab, ray_lab, board, demo_project, tmp_path: Path, case: str) -> None:
    """One line, exit 2, within [cluster] connect_timeout_s (15 s): an address nobody answers at, a port that is
    not a Ray head (the board's sshd), and a submitter host that runs no Ray node."""
    hosts, _ = lab
    toml = _submitter(tmp_path, demo_project, "")
    host, address, want = {
        # nothing has that address: ARP fails ("No route to host") or the probe times out
        "unreachable": (hosts["ci"], f"{hosts.net}.99:6379", ("cannot reach", "no answer from a Ray head")),
        "not-ray": (hosts["ci"], f"{hosts['board'].addr}:22", ("is not a Ray head",)),
        "not-a-node": (hosts["board"], ray_lab, ("this host runs no Ray node",)),
    }[case]
    t0 = time.monotonic()
    r = _edgeship(host, "-c", str(toml), "profile", "--cluster", address, "--device", "boxa", timeout=120)
    took = time.monotonic() - t0
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 2, r.stderr
    assert len(lines) == 1 and lines[0].startswith(f"edgeship: error: --cluster {address}: "), lines
    assert any(w in lines[0] for w in want), lines
    assert took < 60, took


def test_a_ray_start_that_misses_the_startup_window_is_tried_again(tmp_path: Path) -> None:
    """The kit's retry (Ray gives a raylet a fixed 30 s to register; a loaded machine misses it):
    a stand-in host whose first two `ray start` time out, then succeed; and one that always fails
    for another reason is not retried."""
    class StandIn:
        name = "standin"

        def __init__(self, outcomes: list[tuple[int, str]]) -> None:
            self.outcomes, self.calls = outcomes, []

        def run(self, argv: list[str], **_: object) -> subprocess.CompletedProcess[str]:
            self.calls.append(argv[1])
            if argv[1] == "stop":
                return subprocess.CompletedProcess(argv, 0, "", "")
            code, err = self.outcomes.pop(0)
            return subprocess.CompletedProcess(argv, code, "", err)

    slow = StandIn([(1, netns._STARTUP_TIMEOUT + ". This could happen ..."), (1, netns._STARTUP_TIMEOUT), (0, "")])
    netns._ray_start(slow, ["--address", "10.0.0.1:6379"])   # type: ignore[arg-type]
    assert slow.calls == ["start", "stop", "start", "stop", "start"]
    broken = StandIn([(1, "ValueError: bad address")])
    with pytest.raises(RuntimeError, match="bad address"):
        netns._ray_start(broken, ["--address", "nowhere"])   # type: ignore[arg-type]
    assert broken.calls == ["start"]
