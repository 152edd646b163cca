"""The device lab on a real Ray cluster on loopback (ray.cluster_utils.Cluster: a head and
extra nodes as real processes, each advertising its own device through its own edgeship.toml).

One cluster per module (a node costs seconds on this machine); tests that remove a node add
their own. RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 makes Ray bind to 127.0.0.1: no traffic leaves
loopback (the nodes show as node:127.0.0.1, asserted below).
"""

from __future__ import annotations

import _thread
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from edgeship.cli import main
from edgeship.types import Precision, Target
from tests.conftest import cli_project, missing_component, project_copy

FAST = {"threads": 1, "warmup_runs": 2, "warmup_seconds": 0.02, "min_runs": 20, "min_seconds": 0.02,
        "max_seconds": 5.0, "timeout_s": 60.0, "rounds": 1}
ONNX_FP32 = ((Target.ONNX,), (Precision.FP32,))
LOOPBACK = "127.0.0.1"
# read by Ray when it is imported: with 0, Ray's own address detection answers 127.0.0.1
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")


def _require_ray() -> Any:
    try:
        import ray
    except ImportError:
        missing_component("ray is not installed; install it: pip install 'edgeship[cluster]'")
    return ray


def _node_config(root: Path, device: str, table: str = 'kind = "local"') -> Path:
    root.mkdir(parents=True, exist_ok=True)
    return cli_project(root, append=f"\n[devices.{device}]\n{table}\n")


def _add_node(cluster: Any, config: Path, device: str) -> Any:
    """A node as `edgeship worker` starts one: the resources of its `ray start` line and its
    environment (the node's processes inherit it: that is how a task finds the node's config).

    `ray start` itself cannot join on loopback (it rewrites 127.0.0.1 to the host's address), so
    the node is started by Ray's Cluster with exactly what the worker would pass it."""
    from edgeship.cluster import NODE_CONFIG_ENV
    from edgeship.cluster.worker import check_devices, ray_start_argv, worker_env
    from edgeship.config import load_config

    cfg = load_config(config)
    check_devices(cfg, [device])
    argv = ray_start_argv("unused:0", [device])
    resources = json.loads(argv[argv.index("--resources") + 1])
    os.environ[NODE_CONFIG_ENV] = worker_env(cfg)[NODE_CONFIG_ENV]
    try:
        return cluster.add_node(num_cpus=1, resources=resources, include_dashboard=False, node_ip_address=LOOPBACK)
    finally:
        del os.environ[NODE_CONFIG_ENV]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory):
    """(ray, cluster, address): node A owns device 'boxa', node B owns 'boxb'."""
    ray = _require_ray()
    from ray.cluster_utils import Cluster

    root = tmp_path_factory.mktemp("lab")
    cluster = Cluster()
    try:
        _add_node(cluster, _node_config(root / "a", "boxa"), "boxa")
        _add_node(cluster, _node_config(root / "b", "boxb"), "boxb")
        ray.init(address=cluster.address, log_to_driver=False, namespace="edgeship", _node_ip_address=LOOPBACK)
        yield ray, cluster, cluster.address
    finally:
        ray.shutdown()
        cluster.shutdown()


@pytest.fixture
def project(demo_project, tmp_path: Path):
    """The submitter: the demo's artifacts, devices boxa/boxb named (their tables live on the nodes)."""
    devices = {"boxa": {"kind": "local"}, "boxb": {"kind": "local"}, "boxc": {"kind": "local"}}
    return project_copy(tmp_path, demo_project[0], devices=devices, profile=FAST)


def test_profile_across_two_nodes(lab, project) -> None:
    from edgeship.api import profile
    from edgeship.artifact.manifest import artifact_digest
    from edgeship.artifact.selection import find_artifacts
    from edgeship.cluster.connect import advertised

    ray, _, address = lab
    assert address.startswith(f"{LOOPBACK}:")
    nodes = advertised(ray)
    assert nodes["boxa"]["ip"] == nodes["boxb"]["ip"] == LOOPBACK      # loopback only
    assert nodes["boxa"]["id"] != nodes["boxb"]["id"]
    events: list[str] = []
    results = profile(project, "boxa,boxb", *ONNX_FP32, events.append, cluster=address)
    assert sorted(r["device"]["name"] for r in results) == ["boxa", "boxb"]
    ref = find_artifacts(project, *ONNX_FP32)[0]
    for r in results:
        d = r["device"]["name"]
        assert r["status"] == "ok" and r["timing"]["samples_ns"]
        assert r["device"]["node"]["id"] == nodes[d]["id"]             # measured on the node that owns it
        assert r["artifact"]["artifact_digest"] == artifact_digest(ref.path)
        assert r["config_digest"] == project.digest                   # the submitter's config, not the node's
        assert r["outputs"]["cosine"] > 0.9999                        # compared with the submitter's reference
        saved = json.loads((project.build / "results" / d / "onnx-fp32.json").read_text())
        assert saved["device"]["node"]["id"] == nodes[d]["id"]       # written here, by the submitter
    assert any(e.startswith("device boxa: submitted") for e in events)
    assert any(e.startswith("device boxb: done") for e in events)


def test_gate_across_both_nodes(lab, project, capsys: pytest.CaptureFixture[str]) -> None:
    _, _, address = lab
    budget = 'device = "local"\ntarget = "*"\nprecision = "*"\nlatency_ms = { p90 = 1.0 }'
    lab_budget = 'device = "box[ab]"\ntarget = "onnx"\nprecision = "fp32"\nlatency_ms = { p90 = 1000.0 }'
    # INT8 must pay on each lab device: the lab profiles onnx-fp32 with onnx-int8 in one task
    lab_budget += '\n\n[[budgets]]\ndevice = "box[ab]"\ntarget = "onnx"\nprecision = "int8"\nmin_speedup_vs_fp32 = 0.01'
    # 4 rounds: 4 FP32/INT8 pairs per device, enough for a speed-up interval without re-measuring
    toml = cli_project(project.root, {budget: lab_budget, "rounds = 2": "rounds = 4"},
                       append='\n[devices.boxa]\nkind = "local"\n\n[devices.boxb]\nkind = "local"\n')
    code = main(["-c", str(toml), "gate", "--cluster", address, "--no-remeasure"])
    out, err = capsys.readouterr()
    assert code == 0, out + err
    report = json.loads((project.build / "reports" / "report.json").read_text())
    lat = {c["device"]: c["verdict"] for c in report["checks"] if c["metric"] == "latency_p90_ms"}
    assert lat == {"boxa": "PASS", "boxb": "PASS"}
    speed = {c["device"]: c["verdict"] for c in report["checks"] if c["metric"] == "speedup_vs_fp32"}
    assert speed == {"boxa": "PASS", "boxb": "PASS"}, [c["detail"] for c in report["checks"]]
    assert "device boxa: done on node 127.0.0.1" in err


def test_device_is_held_exclusively(lab, project) -> None:
    """Two submissions naming one device at once: the second task waits for the first."""
    from edgeship.artifact.selection import find_artifacts
    from edgeship.cluster.submit import run_tasks
    from edgeship.measure.inputs import profiling_inputs

    ray, _, _ = lab
    ref = find_artifacts(project, *ONNX_FP32)[0]
    opts = {"inputs": profiling_inputs(project), "reference": None, "min_runs": None, "min_seconds": 0.3,
            "threads": None, "rounds": 1}
    got: list[dict[str, Any]] = []

    def submit() -> None:
        got.append(run_tasks(ray, project, {"boxb": [ref]}, opts, lambda _m: None)["boxb"])

    threads = [threading.Thread(target=submit) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert len(got) == 2 and all(o["error"] is None for o in got), got
    first, second = sorted(got, key=lambda o: o["started"])
    assert second["started"] >= first["finished"], (first["started"], first["finished"], second["started"])


def test_node_dying_mid_run_is_an_error_for_its_device(lab, project, tmp_path: Path) -> None:
    from edgeship.api import profile
    from edgeship.cluster.submit import ClusterRunError

    ray, cluster, address = lab
    node = _add_node(cluster, _node_config(tmp_path / "c", "boxc"), "boxc")
    cluster.wait_for_nodes()
    # a run that surely lasts past the node's removal: 4 s of warm-up (not recorded as samples)
    slow = project.model_copy(update={"profile": project.profile.model_copy(update={"warmup_seconds": 4.0, "max_runs": 0})})
    caught: list[BaseException] = []

    def run() -> None:
        try:
            profile(slow, "boxc,boxa", *ONNX_FP32, cluster=address)
        except BaseException as exc:  # noqa: BLE001  (handed to the test thread)
            caught.append(exc)

    t = threading.Thread(target=run)
    t.start()
    deadline = time.monotonic() + 60
    # boxc's task holds the device (Ray leaves a fully used resource out of available_resources)
    while "edgeship-device:boxc" in ray.available_resources():
        assert time.monotonic() < deadline and not caught, f"boxc's task never started {caught}"
        time.sleep(0.1)
    time.sleep(1.0)
    cluster.remove_node(node)
    t.join(timeout=120)
    assert not t.is_alive(), "the submitter hangs after its node died"
    assert len(caught) == 1 and isinstance(caught[0], ClusterRunError), caught
    err = caught[0]
    assert len(err.errors) == 1 and "device 'boxc' on node 127.0.0.1" in err.errors[0], err.errors
    assert "step 'run'" in err.errors[0]
    assert [r["device"]["name"] for r in err.results] == ["boxa"]          # the other device finished
    assert (project.build / "results" / "boxa" / "onnx-fp32.json").is_file()
    assert not (project.build / "results" / "boxc").exists()


def test_ctrl_c_cancels_the_submitted_tasks(lab, project, sigint_raises) -> None:
    from edgeship.artifact.selection import find_artifacts
    from edgeship.cluster.submit import run_tasks
    from edgeship.measure.inputs import profiling_inputs

    ray, _, _ = lab
    ref = find_artifacts(project, *ONNX_FP32)[0]
    slow = project.model_copy(update={"profile": project.profile.model_copy(update={"warmup_seconds": 30.0,
                                                                                   "max_seconds": 60.0,
                                                                                   "max_runs": 0})})
    opts = {"inputs": profiling_inputs(project), "reference": None, "min_runs": None, "min_seconds": None,
            "threads": None, "rounds": 1}

    submitted: list[Any] = []
    # Ctrl-C while the submitter waits: KeyboardInterrupt in the main thread, as a terminal sends it
    timer = threading.Timer(3.0, _thread.interrupt_main)
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            run_tasks(ray, slow, {"boxb": [ref]}, opts, lambda _m: None, submitted)
    finally:
        timer.cancel()
    assert len(submitted) == 1
    with pytest.raises(ray.exceptions.TaskCancelledError):
        ray.get(submitted[0], timeout=60)     # boxb's 30 s run was cancelled, not left running


def test_eval_device_on_its_node(lab, project) -> None:
    """eval --device boxb --cluster: the node runs the chunks, this host scores and writes eval.json."""
    from edgeship.api import evaluate
    from edgeship.artifact.eval_file import eval_path

    _, _, address = lab
    report = evaluate(project, *ONNX_FP32, device="boxb", chunk=50, cluster=address)
    assert report["updated"] == ["boxb/onnx-fp32"]
    e = json.loads(eval_path(project).read_text())["entries"]["boxb/onnx-fp32"]
    assert e["status"] == "ok" and e["device"] == "boxb" and e["samples"] == report["samples"] > 50
    assert e["cosine_min"] > 0.9999 and e["top1_agreement"] == 1.0 and e["cpu"]
    assert "local/onnx-fp32" in report["entries"]          # a subset eval merges, others kept


def test_unadvertised_device_fails_in_the_gate(lab, project, capsys: pytest.CaptureFixture[str]) -> None:
    """A budgeted device no node advertises: an error line and FAIL rows, never a hang or a drop;
    its earlier result (valid for the artifact on disk) stays on disk but is not judged."""
    from edgeship.measure.profile import profile

    _, _, address = lab
    (earlier,) = profile(project, "local", *ONNX_FP32)
    earlier["device"]["name"] = "boxz"
    kept = project.build / "results" / "boxz" / "onnx-fp32.json"
    kept.parent.mkdir(parents=True)
    kept.write_text(json.dumps(earlier))
    kept_bytes = kept.read_bytes()
    budget = 'device = "local"\ntarget = "*"\nprecision = "*"\nlatency_ms = { p90 = 1.0 }'
    lab_budget = 'device = "box[ab]"\ntarget = "onnx"\nprecision = "fp32"\nlatency_ms = { p90 = 1000.0 }'
    toml = cli_project(project.root, {budget: lab_budget},
                       append='\n[devices.boxa]\nkind = "local"\n\n[devices.boxb]\nkind = "local"\n'
                              '\n[devices.boxz]\nkind = "local"\n')
    toml.write_text(toml.read_text().replace('device = "box[ab]"', 'device = "box[abz]"'))
    code = main(["-c", str(toml), "gate", "--cluster", address, "--no-remeasure"])
    out, err = capsys.readouterr()
    assert code == 1, out + err
    assert "device 'boxz' on no node, step 'submit'" in err
    report = json.loads((project.build / "reports" / "report.json").read_text())
    lat = {c["device"]: c["verdict"] for c in report["checks"] if c["metric"] == "latency_p90_ms"}
    assert lat == {"boxa": "PASS", "boxb": "PASS", "boxz": "FAIL"}
    boxz = next(c for c in report["checks"] if c["device"] == "boxz")
    assert "edgeship profile" in boxz["rerun"] and "--device boxz" in boxz["rerun"]   # names the re-run
    assert "profiling in this run failed: device 'boxz' on no node" in boxz["detail"], boxz
    assert kept.read_bytes() == kept_bytes
    assert all(r["device"]["name"] != "boxz" for r in report["results"])   # not reported as measured


def test_worker_refuses_a_device_that_fails_its_check(lab, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, _, address = lab
    toml = _node_config(tmp_path, "broken", 'kind = "local"\npython = "/nonexistent/python3"')
    code = main(["-c", str(toml), "worker", "--cluster", address, "--devices", "local,broken"])
    _, err = capsys.readouterr()
    assert code == 2
    assert "device 'broken' fails 'edgeship devices check broken'" in err and "not advertising" in err


def test_worker_checks_then_advertises(lab, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A device that passes its check is advertised with the `ray start` line the nodes above run."""
    _, _, address = lab
    toml = _node_config(tmp_path, "boxw")
    assert main(["-c", str(toml), "worker", "--cluster", address, "--devices", "boxw", "--check-only"]) == 0
    out, _ = capsys.readouterr()
    assert f"--address {address}" in out and "edgeship-device:boxw" in out and "--block" in out


def test_no_ray_without_a_cluster() -> None:
    """The embedded default: every command's module and profile's code path load without Ray."""
    import subprocess
    import sys

    code = ("import sys\nfrom edgeship.cli import build_parser\nbuild_parser()\n"
            "import edgeship.measure.profile, edgeship.measure.evaluate_device, edgeship.gating.judge\n"
            "print('ray' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "False", out.stderr


def test_artifacts_are_checked_on_arrival(demo_project, tmp_path: Path) -> None:
    """transport: a byte changed in flight, or a path leaving the artifact, is refused (no Ray needed)."""
    from edgeship.artifact.selection import find_artifacts
    from edgeship.cluster.transport import pack, unpack
    from edgeship.errors import ArtifactError

    cfg = demo_project[0]
    ref = find_artifacts(cfg, *ONNX_FP32)[0]
    payload = pack(ref)
    got = unpack(payload, tmp_path / "ok", cfg.model.name)
    assert got.name == ref.name and got.manifest.model_file == ref.manifest.model_file
    model = ref.manifest.model_file
    bad = {**payload, "files": {**payload["files"], model: payload["files"][model][:-1] + b"\0"}}
    with pytest.raises(ArtifactError, match="sha256|size"):
        unpack(bad, tmp_path / "bad", cfg.model.name)
    escape = {**payload, "files": {**payload["files"], "../outside": b"x"}}
    with pytest.raises(ArtifactError, match="leaves the artifact directory"):
        unpack(escape, tmp_path / "escape", cfg.model.name)
    assert not (tmp_path / "escape" / "outside").exists()


def test_cluster_address_in_config(tmp_path: Path) -> None:
    from edgeship.config import load_config
    from edgeship.errors import ConfigError

    ok = cli_project(tmp_path, append='\n[cluster]\naddress = "auto"\n')
    assert load_config(ok).cluster.address == "auto"
    ok.write_text(ok.read_text().replace('address = "auto"', 'adress = "auto"'))
    with pytest.raises(ConfigError, match="cluster.adress"):
        load_config(ok)


def test_connect_timeout_in_config(tmp_path: Path) -> None:
    from edgeship.config import load_config
    from edgeship.errors import ConfigError

    toml = cli_project(tmp_path, append='\n[cluster]\naddress = "auto"\n')
    assert load_config(toml).cluster.connect_timeout_s == 15.0
    for bad in ("0", "-1", '"soon"', "inf", "1e9"):
        toml.write_text(cli_project(tmp_path, append=f'\n[cluster]\nconnect_timeout_s = {bad}\n').read_text())
        with pytest.raises(ConfigError, match="cluster.connect_timeout_s"):
            load_config(toml)
    toml.write_text(cli_project(tmp_path, append="\n[cluster]\nconnect_timeout_s = 2.5\n").read_text())
    assert load_config(toml).cluster.connect_timeout_s == 2.5


def _listener(reply: bytes) -> tuple[Any, list[Any]]:
    """A plain TCP server on 127.0.0.1 that accepts, sends ``reply`` (maybe nothing) and keeps the
    connection open: not a Ray head."""
    import contextlib
    import socket

    srv = socket.socket()
    srv.bind((LOOPBACK, 0))
    srv.listen()
    conns: list[Any] = []

    def serve() -> None:
        with contextlib.suppress(OSError):
            while True:
                c = srv.accept()[0]
                conns.append(c)
                c.sendall(reply)

    threading.Thread(target=serve, daemon=True).start()
    return srv, conns


@pytest.mark.parametrize("case", ["closed", "silent", "banner"])
def test_no_ray_head_there_is_one_line_within_the_timeout(case: str) -> None:
    """Ray's own connect retries for many minutes; edgeship's check ends within connect_timeout_s."""
    import socket

    from edgeship.cluster.connect import probe
    from edgeship.errors import UsageError

    timeout = 2.0
    srv, conns = None, []
    if case == "closed":     # bound, then closed: nothing listens there
        with socket.socket() as s:
            s.bind((LOOPBACK, 0))
            port = s.getsockname()[1]
    else:                    # something listens, but says nothing / says it is SSH
        srv, conns = _listener(b"" if case == "silent" else b"SSH-2.0-OpenSSH_9.6\r\n")
        port = srv.getsockname()[1]
    address = f"{LOOPBACK}:{port}"
    t0 = time.monotonic()
    try:
        with pytest.raises(UsageError) as info:
            probe(address, timeout)
    finally:
        took = time.monotonic() - t0
        if srv is not None:
            srv.close()
        for c in conns:
            c.close()
    line = str(info.value)
    assert "\n" not in line and f"--cluster {address}" in line and "ray start --head" in line
    want = {"closed": "Connection refused", "silent": f"no answer from a Ray head at {address} within 2 s",
            "banner": "is not a Ray head"}[case]
    assert want in line, line
    # a few seconds of slack for a loaded machine; a silent server costs exactly the timeout
    assert took < timeout + 5, took
    if case == "silent":
        assert took >= timeout - 0.1 and conns, (took, conns)


def test_the_check_lets_a_real_ray_head_through(lab) -> None:
    """The head's GCS answers the HTTP/2 greeting at once: the check costs no waiting."""
    from edgeship.cluster.connect import probe

    _, _, address = lab
    t0 = time.monotonic()
    probe(address, 10.0)
    assert time.monotonic() - t0 < 10.0
