"""eval.json v2 and ``eval --device``: the evaluation set through the standalone runner.

The runner's batch mode on a tiny real ONNX artifact (no torch); the demo through the local
device in chunks, compared with the in-process eval; merges, skips and failures.
(The SSH board is in tests/test_ssh.py.)
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgeship.artifact.atomic import sha256_file
from edgeship.artifact.runner_files import RUNNER_PACKAGE, write_runner_package
from tests.conftest import project_copy
from tests.test_runner import make_onnx_artifact


def _batch(cwd: Path, inputs: str = "chunk.npz") -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", f"{RUNNER_PACKAGE}.runner", "--artifact", "artifact", "--eval-inputs", inputs,
            "--eval-outputs", "out.npz", "--out", "result.json"]
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False, timeout=60)


def test_runner_batch_mode_runs_each_sample_once_and_stacks_outputs(tmp_path: Path) -> None:
    make_onnx_artifact(tmp_path / "artifact")
    write_runner_package(tmp_path, "onnxruntime")
    x = np.random.default_rng(1).standard_normal((5, 1, 64)).astype(np.float32)
    np.savez(tmp_path / "chunk.npz", x=x)
    run = _batch(tmp_path)
    assert run.returncode == 0, run.stderr
    r = json.loads((tmp_path / "result.json").read_text())
    assert r["status"] == "ok" and r["eval"] == {"samples": 5} and r["timing"] is None and r["env"]["cpu"]
    w = np.random.default_rng(0).standard_normal((64, 64)).astype(np.float32)
    with np.load(tmp_path / "out.npz") as z:
        assert z.files == ["y"] and z["y"].shape == (5, 1, 64)
        for i in range(5):
            np.testing.assert_allclose(z["y"][i], np.maximum(x[i] @ w, 0), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("arrays", "needle"), [
    ({"x": np.zeros((3, 64), np.float32)}, "input 'x' has shape [3, 64], the artifact expects (n, 1, 64)"),
    ({"z": np.zeros((3, 1, 64), np.float32)}, "no array named 'x'"),
    ({"x": np.zeros((0, 1, 64), np.float32)}, "zero sample counts"),
])
def test_runner_batch_mode_bad_chunk_exits_5_in_one_line(tmp_path: Path, arrays: dict, needle: str) -> None:
    make_onnx_artifact(tmp_path / "artifact")
    write_runner_package(tmp_path, "onnxruntime")
    np.savez(tmp_path / "chunk.npz", **arrays)
    run = _batch(tmp_path)
    assert run.returncode == 5 and len(run.stderr.strip().splitlines()) == 1 and needle in run.stderr, run.stderr
    assert not (tmp_path / "result.json").exists() and not (tmp_path / "out.npz").exists()


def test_local_eval_v2_entries_carry_digests_and_subsets_merge(demo_project, tmp_path: Path) -> None:
    from edgeship.artifact.eval_file import SCHEMA
    from edgeship.measure.evaluate import evaluate
    from edgeship.types import Precision, Target

    cfg = project_copy(tmp_path, demo_project[0])
    full = json.loads((cfg.build / "reports" / "eval.json").read_text())
    digest = demo_project[0].digest          # the config the session fixture evaluated with
    assert full["schema"] == SCHEMA == "edgeship.eval/2" and full["config_digest"] == digest
    for key, e in full["entries"].items():
        assert key == f"local/{e['artifact']}" and e["device"] == "local"
        art = cfg.build / "artifacts" / cfg.model.name / e["artifact"]
        assert e["artifact_digest"] == sha256_file(art / "manifest.json")
        assert e["config_digest"] == digest and e["samples"] == full["samples"] and e["cpu"]
    only = evaluate(cfg, (Target.ONNX,), (Precision.FP32,))
    assert only["updated"] == ["local/onnx-fp32"] and only["entries"]["local/onnx-fp32"]["config_digest"] == cfg.digest
    after = json.loads((cfg.build / "reports" / "eval.json").read_text())
    assert after["entries"].keys() == full["entries"].keys()                  # the others are kept ...
    for key in full["entries"]:
        if key != "local/onnx-fp32":
            assert after["entries"][key] == full["entries"][key]              # ... untouched


def test_eval_on_the_local_device_matches_in_process_in_chunks(demo_project, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from edgeship.devices.local import LocalDevice
    from edgeship.measure.evaluate import evaluate
    from edgeship.types import Precision, Target

    cfg = project_copy(tmp_path, demo_project[0])
    here = json.loads((cfg.build / "reports" / "eval.json").read_text())["entries"]
    seen: list[list[str]] = []
    real_push = LocalDevice.push

    def push(self: LocalDevice, local: Path, remote_name: str) -> str:
        if remote_name.startswith("eval-in-"):   # what the device holds when a chunk arrives
            seen.append(sorted(p.name for p in Path(self.workdir).iterdir()))
        return real_push(self, local, remote_name)

    monkeypatch.setattr(LocalDevice, "push", push)
    report = evaluate(cfg, (Target.ONNX,), (Precision.FP32, Precision.INT8), device="local", chunk=100)
    n = report["samples"]
    k = -(-n // 100)
    assert len(seen) == 2 * k                                              # chunks of 100 ...
    # ... each deleted before the next arrives, and an artifact's bundle once it is evaluated
    assert [s[0] for s in seen] == ["eval-onnx-fp32"] * k + ["eval-onnx-int8"] * k and all(len(s) == 1 for s in seen)
    for name in ("onnx-fp32", "onnx-int8"):
        dev, ref = report["entries"][f"local/{name}"], here[f"local/{name}"]
        assert dev["status"] == "ok" and dev["samples"] == n and dev["cpu"]
        # the same runtime on the same CPU: the runner computes what the in-process eval computed
        for k in ("cosine_min", "cosine_mean", "top1_agreement", "accuracy", "accuracy_drop"):
            assert dev[k] == pytest.approx(ref[k], abs=1e-6), k


def test_eval_on_an_adb_phone_is_skipped_with_the_reason(demo_project, tmp_path: Path) -> None:
    from edgeship.measure.evaluate import evaluate
    from edgeship.types import Target

    cfg = project_copy(tmp_path, demo_project[0], devices={"phone": {"kind": "adb", "serial": "none-such"}})
    report = evaluate(cfg, (Target.TFLITE,), device="phone")
    assert report["updated"] and all(k.startswith("phone/tflite-") for k in report["updated"])
    for key in report["updated"]:
        e = report["entries"][key]
        assert e["status"] == "skipped" and e["skip_reason"] == "adb device: the native benchmark tools print timings, not outputs"
        assert e["cosine_mean"] is None and e["artifact_digest"]
    assert "local/tflite-int8" in report["entries"]                        # this host's entries kept


def test_eval_device_failure_is_one_line_and_recorded(demo_project, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    from edgeship.cli import main
    from tests.conftest import cli_project

    project_copy(tmp_path, demo_project[0])
    toml = cli_project(tmp_path, append='\n[devices.broken]\nkind = "local"\npython = "/opt/no such/python3"\n')
    code = main(["--config", str(toml), "eval", "--device", "broken", "-t", "onnx", "-p", "fp32"])
    err = capsys.readouterr().err.strip()
    errors = [ln for ln in err.splitlines() if "error" in ln]   # the rest is progress
    assert code == 2 and len(errors) == 1 and errors[0] == err.splitlines()[-1], err
    assert "device 'broken', artifact onnx-fp32: run chunk 00000: cannot start /opt/no such/python3" in errors[0]
    entries = json.loads((tmp_path / "build" / "reports" / "eval.json").read_text())["entries"]
    assert entries["broken/onnx-fp32"]["status"] == "error" and "cannot start" in entries["broken/onnx-fp32"]["skip_reason"]
    assert entries["local/onnx-fp32"]["status"] == "ok"


def test_unreadable_eval_json_stops_before_any_work(demo_project, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    from edgeship.cli import main
    from tests.conftest import cli_project

    project_copy(tmp_path, demo_project[0])
    path = tmp_path / "build" / "reports" / "eval.json"
    path.write_text("{not json")
    code = main(["--config", str(cli_project(tmp_path)), "eval", "-t", "onnx", "-p", "fp32"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err, err      # nothing ran: no progress either
    assert str(path) in err and "delete it" in err and path.read_text() == "{not json"


def test_eval_v1_file_is_replaced_and_said(demo_project, tmp_path: Path) -> None:
    from edgeship.measure.evaluate import evaluate
    from edgeship.types import Precision, Target

    cfg = project_copy(tmp_path, demo_project[0])
    path = cfg.build / "reports" / "eval.json"
    path.write_text(json.dumps({"schema": "edgeship.eval/1", "artifacts": {"onnx-int8": {}}}))
    events: list[str] = []
    report = evaluate(cfg, (Target.ONNX,), (Precision.FP32,), on_event=events.append)
    assert list(report["entries"]) == ["local/onnx-fp32"]
    assert any("'edgeship.eval/1' has no digests; replaced by edgeship.eval/2" in e for e in events), events
