"""Issue 28: per-op latency (``profile --ops``) and per-layer fidelity (``eval --device --layers``)
measured where the artifact runs: the local runner, a real sshd on loopback, the emulated
Cortex-A76 (qemu-user running the real aarch64 runtimes; numerics only, op times SKIPPED).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import FAST_PROFILE, tiny_config
from tests.test_emulated import arm64_userland, require_emulation  # noqa: F401  (a fixture, used by name)
from tests.test_ssh import sshd  # noqa: F401  (the real loopback sshd fixture, used by name)

PI5 = {"kind": "emulated", "arch": "arm64", "cpu": "cortex-a76"}
BOTH = {"onnx": {"precisions": ["fp32", "int8"]}, "tflite": {"precisions": ["fp32", "int8"]}}


@pytest.fixture(scope="module")
def cnn(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The MobileNet-style depthwise-separable CNN exported to ONNX INT8 (and FP32) once."""
    from edgeship.exporting.pipeline import export
    from edgeship.types import Precision, Target

    cfg = tiny_config(tmp_path_factory.mktemp("cnn"), "depthwise_cnn", targets={"onnx": {"precisions": ["fp32", "int8"]}},
                      budgets=[], profile=FAST_PROFILE)
    export(cfg, (Target.ONNX,), (Precision.FP32, Precision.INT8))
    return cfg


@pytest.fixture(scope="module")
def diverging(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """tests/models.py's DivergeAtFc3 exported to ONNX and TFLite, FP32 and INT8."""
    from edgeship.exporting.pipeline import export
    from edgeship.types import Precision, Target

    cfg = tiny_config(tmp_path_factory.mktemp("diverge"), "diverge_at_fc3", targets=BOTH, budgets=[], profile=FAST_PROFILE)
    export(cfg, (Target.ONNX, Target.TFLITE), (Precision.FP32, Precision.INT8))
    return cfg


def _with_devices(cfg: Any, tmp: Path, **devices: Any) -> Any:
    """The same tiny model over a private copy of ``cfg``'s artifacts, with ``devices``."""
    import shutil

    shutil.copytree(cfg.build / "artifacts", tmp / "build" / "artifacts")
    return tiny_config(tmp, cfg.model.name, targets=BOTH, budgets=[], profile=FAST_PROFILE, devices=devices)


def _toml(cfg: Any, path: Path) -> Path:
    """edgeship.toml of the tiny model ``cfg`` (its build dir beside it) for CLI tests."""
    from tests.models import TINY_MODELS

    m = TINY_MODELS[cfg.model.name]
    inputs = ", ".join(f'{{ name = "{s.name}", shape = {list(s.shape)}, dtype = "{s.dtype}" }}' for s in m.inputs)
    path.write_text(f"""[model]
name = "{m.name}"
factory = "{m.factory}"
outputs = {json.dumps(list(m.outputs))}
inputs = [{inputs}]

[data]
calibration = "{m.calibration}"
calibration_samples = 16

[targets.onnx]
precisions = ["fp32", "int8"]

[targets.tflite]
precisions = ["fp32", "int8"]

[profile]
threads = 1
min_runs = 64
min_seconds = 0.05
warmup_seconds = 0.05
rounds = 2
""")
    return path


# ---- the runner's summary ------------------------------------------------------------------

def test_op_summary_drops_warmup_runs_and_keeps_irregular_nodes_out_of_the_totals() -> None:
    from edgeship.runtimes.runner import summarize_ops

    # 1 first run + 2 warmup + 3 measured; node "a" twice per run (a loop body), "b" once, "c" truncated
    events = []
    for run in range(6):
        events += [("a", "Conv", 1000 * (run + 1)), ("a", "Conv", 1000 * (run + 1)), ("b", "Relu", 500)]
        if run < 4:
            events.append(("c", "Add", 7))
    s = summarize_ops(events, total_runs=6, measured=3)
    rows = {r["name"]: r for r in s["ops"]}
    assert rows["a"]["p50_ms"] == pytest.approx(2 * 5000 / 1e6)      # runs 4..6 only: 4000, 5000, 6000 us-ish x2
    assert rows["b"]["p50_ms"] == pytest.approx(500 / 1e6)
    assert s["irregular"] == ["c"] and s["total"]["p50_ms"] == pytest.approx((10000 + 500) / 1e6)
    assert [r["name"] for r in s["ops"]] == ["a", "b", "c"]              # slowest first
    assert {t["op_type"] for t in s["op_types"]} == {"Conv", "Relu"} and s["runs"] == 3


# ---- profile --ops -------------------------------------------------------------------------

def _check_ops(record: dict[str, Any], model: Path, emulated: bool = False) -> None:
    """The --json record names real nodes of the shipped model, slowest first (times where representative)."""
    import onnx

    nodes = {n.name for n in onnx.load(str(model)).graph.node}
    ops = record["ops"]
    assert record["status"] == "ok" and ops and all({"name", "op_type", "p50_ms"} <= o.keys() for o in ops)
    # ORT fuses each QDQ conv group into QLinearConv keeping the node's name (a "_token_N" suffix where its
    # layout pass rewrote it to NHWC, adding Transposes of its own; a few rewrites name their own nodes)
    import re

    def shipped(o: dict[str, Any]) -> bool:
        return re.sub(r"_token_\d+$", "", o["name"]) in nodes

    convs = [o for o in ops if o["op_type"] == "QLinearConv"]
    assert convs and all(shipped(o) for o in convs) and sum(map(shipped, ops)) >= len(ops) // 2, ops
    if emulated:
        assert all(o["p50_ms"] is None for o in ops) and "timing is not representative" in record["reason"]
        return
    times = [o["p50_ms"] for o in ops]
    assert times == sorted(times, reverse=True) and times[0] > 0
    lat = record["latency"]
    assert lat["median_ms"] > 0 and record["ops_sum_ms"] == pytest.approx(lat["ops_sum_ms"])
    # within 15% of the latency rounds' median, or the output says why not
    assert abs(lat["coverage"] - 1) <= 0.15 or "outside its kernels" in lat["note"] or "profiler" in lat["note"], lat


def test_profile_ops_local_names_the_slowest_ops_and_sets_them_against_the_latency(
        cnn: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from edgeship.cli import main

    cfg = _with_devices(cnn, tmp_path)
    toml = _toml(cfg, tmp_path / "edgeship.toml")
    assert main(["--config", str(toml), "profile", "-t", "onnx", "-p", "int8", "--ops", "--op-runs", "30", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    (rec,) = out["ops"]
    model = cfg.build / "artifacts" / cfg.model.name / "onnx-int8" / "model.onnx"
    _check_ops(rec, model)
    from edgeship.artifact.manifest import artifact_digest

    assert rec["artifact_digest"] == artifact_digest(model.parent) and rec["runs"] == 30
    saved = json.loads((cfg.build / "results" / "local" / "ops" / "onnx-int8.json").read_text())
    assert saved["schema"] == "edgeship.ops/1" and saved["artifact"]["artifact_digest"] == rec["artifact_digest"]
    # the terminal form: a head line with the sum against the median, the slowest op first
    assert main(["--config", str(toml), "profile", "-t", "onnx", "-p", "int8", "--ops", "--op-runs", "30", "--top", "3"]) == 0
    text = capsys.readouterr().out
    assert "op profile of onnx-int8 on local (30 runs, onnxruntime profiler" in text and "of the median latency" in text


def test_profile_ops_of_tflite_says_litert_reports_no_per_op_times(diverging: Any, tmp_path: Path) -> None:
    from edgeship.measure.op_profile import profile_ops
    from edgeship.types import Precision, Target

    cfg = _with_devices(diverging, tmp_path)
    (rec,) = profile_ops(cfg, "local", (Target.TFLITE,), (Precision.INT8,), runs=5)
    assert rec["status"] == "unreported" and "ops" not in rec
    assert rec["skip_reason"].startswith("the LiteRT Python interpreter exposes no per-op timing")
    assert "benchmark_model --enable_op_profiling=true" in rec["skip_reason"] and "\n" not in rec["skip_reason"]


def test_profile_ops_over_ssh(cnn: Any, sshd: Any, tmp_path: Path) -> None:  # noqa: F811
    from edgeship.commands.profile import ops_record
    from edgeship.measure.op_profile import profile_ops
    from edgeship.measure.profile import profile
    from edgeship.types import Precision, Target

    cfg = _with_devices(cnn, tmp_path, board=sshd.device_config(sys.executable))
    profile(cfg, "board", (Target.ONNX,), (Precision.INT8,))
    (rec,) = profile_ops(cfg, "board", (Target.ONNX,), (Precision.INT8,), runs=30)
    assert rec["device"] == {"name": "board", "kind": "ssh"}
    _check_ops(ops_record(rec), cfg.build / "artifacts" / cfg.model.name / "onnx-int8" / "model.onnx")


def test_profile_ops_on_the_emulated_cortex_a76_lists_ops_with_times_skipped(
        cnn: Any, arm64_userland: Path, tmp_path: Path) -> None:  # noqa: F811
    from edgeship.commands.profile import format_ops, ops_record
    from edgeship.measure.op_profile import profile_ops
    from edgeship.types import Precision, Target

    cfg = _with_devices(cnn, tmp_path, pi5=PI5)
    (rec,) = profile_ops(cfg, "pi5", (Target.ONNX,), (Precision.INT8,), runs=3)
    assert rec["device"]["emulated"] is True and rec["env"]["machine"] == "aarch64" and "latency" not in rec
    _check_ops(ops_record(rec), cfg.build / "artifacts" / cfg.model.name / "onnx-int8" / "model.onnx", emulated=True)
    assert "times SKIPPED (emulated device: timing is not representative)" in format_ops(rec)


def test_the_gate_never_judges_latency_on_op_profiling_runs(cnn: Any, tmp_path: Path) -> None:
    """The op profile is its own run and file: the latency result holds the rounds' samples only,
    and an op profile alone is no latency evidence (the budget FAILs asking for 'profile')."""
    from edgeship.gating.judge import gate
    from edgeship.measure.op_profile import ops_path, profile_ops
    from edgeship.measure.profile import load_results, profile, result_path
    from edgeship.types import Precision, Target

    cfg = _with_devices(cnn, tmp_path)
    (lat,) = profile(cfg, "local", (Target.ONNX,), (Precision.INT8,))
    before = result_path(cfg, "local", "onnx-int8").read_bytes()
    (ops,) = profile_ops(cfg, "local", (Target.ONNX,), (Precision.INT8,), runs=50)
    assert result_path(cfg, "local", "onnx-int8").read_bytes() == before     # not merged into the latency result
    assert sum(len(r["samples_ns"]) for r in lat["timing"]["rounds"]) == len(lat["timing"]["samples_ns"])
    assert [r["artifact"]["name"] for r in load_results(cfg, "local")] == ["onnx-int8"]
    assert all(r.get("schema") != "edgeship.ops/1" for r in load_results(cfg))

    budgets = [{"device": "local", "target": "onnx", "precision": "int8", "latency_ms": {"p50": 1e6}}]
    judged = tiny_config(tmp_path, cfg.model.name, targets=BOTH, budgets=budgets, profile=FAST_PROFILE)
    result_path(judged, "local", "onnx-int8").unlink()       # only the op profile is left
    assert ops_path(judged, "local", "onnx-int8").is_file() and ops["status"] == "ok"
    rep = gate(judged, remeasure=lambda d, a: [])
    lat_checks = [c for c in rep.checks if "latency" in c.check.name]
    assert lat_checks and all(c.verdict.value == "FAIL" for c in lat_checks), [(c.check.name, c.detail) for c in lat_checks]


# ---- eval --device --layers ----------------------------------------------------------------

def _first(rec: dict[str, Any]) -> dict[str, Any]:
    assert rec["status"] == "ok", rec
    assert rec["outputs_max_abs_diff"] == 0.0      # the observed run computes what ships
    first = rec["first_divergent"]
    assert first is not None and first["module"] == "fc3", rec["layers"]
    before = rec["layers"][:rec["layers"].index(first)]
    assert [r["module"] for r in before if r["module"] in ("fc1", "fc2")] == ["fc1", "fc2"]
    assert all(r["cosine_min"] >= rec["threshold"] for r in before)
    return first


def test_layers_on_the_local_device_name_fc3_for_onnx_and_tflite(diverging: Any, tmp_path: Path) -> None:
    from edgeship.artifact.manifest import artifact_digest
    from edgeship.artifact.selection import find_artifacts
    from edgeship.measure.device_layers import device_layers

    cfg = _with_devices(diverging, tmp_path)
    refs = [r for r in find_artifacts(cfg) if r.precision.value == "int8"]
    out = device_layers(cfg, "local", refs, samples=4)
    onnx, tfl = out["local/onnx-int8"], out["local/tflite-int8"]
    assert _first(onnx)["layer"] == "node_Gemm_2" and _first(tfl)["op_type"] == "FULLY_CONNECTED"
    assert onnx["artifact_digest"] == artifact_digest(refs[0].path if refs[0].name == "onnx-int8" else refs[1].path)
    assert len(onnx["debug_model_sha256"]) == 64 and onnx["reference"]["artifact"] == "onnx-fp32"
    saved = json.loads((cfg.build / "reports" / "eval.json").read_text())["device_layers"]
    assert saved["local/onnx-int8"]["first_divergent"]["module"] == "fc3"


def test_eval_layers_on_the_emulated_cortex_a76_names_fc3(diverging: Any, arm64_userland: Path,  # noqa: F811
                                                          tmp_path: Path) -> None:
    from edgeship.artifact.selection import find_artifacts
    from edgeship.measure.device_layers import device_layers

    cfg = _with_devices(diverging, tmp_path, pi5=PI5)
    refs = [r for r in find_artifacts(cfg) if r.precision.value == "int8"]
    out = device_layers(cfg, "pi5", refs, samples=4)
    for name in ("onnx-int8", "tflite-int8"):
        rec = out[f"pi5/{name}"]
        assert rec["cpu"]["cpu_class"] == "arm64-dotprod", rec["cpu"]
        _first(rec)


def test_one_view_explain_side_by_side_and_the_html_sections(diverging: Any, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    """explain ARTIFACT --device puts the host ranking, the device's fidelity and its op times in
    one table; report.html draws the op bars and the fidelity line with fc3 marked; a later
    host eval keeps the device's per-layer records."""
    from edgeship.artifact.selection import find_artifacts
    from edgeship.cli import main
    from edgeship.measure.device_layers import device_layers
    from edgeship.measure.evaluate import evaluate
    from edgeship.measure.op_profile import all_ops, profile_ops
    from edgeship.measure.profile import profile
    from edgeship.reports.drawing import WIDE
    from edgeship.reports.html_device import fidelity_line_plot, op_time_plot
    from edgeship.types import Precision, Target

    cfg = _with_devices(diverging, tmp_path)
    toml = _toml(cfg, tmp_path / "edgeship.toml")
    onnx = find_artifacts(cfg, (Target.ONNX,), (Precision.INT8,))
    assert main(["--config", str(toml), "explain", "onnx-int8", "--device", "local", "--json", "-n", "8"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["device_layers"] is None and first["ops"] is None
    assert any("run 'edgeship eval --device local --layers -t onnx -p int8'" in n for n in first["notes"])

    layers = device_layers(cfg, "local", onnx, samples=4)
    profile(cfg, "local", (Target.ONNX,), (Precision.INT8,))
    profile_ops(cfg, "local", (Target.ONNX,), (Precision.INT8,), runs=20)
    evaluate(cfg, (Target.ONNX,), (Precision.INT8,))          # the host eval rewrites eval.json ...
    saved = json.loads((cfg.build / "reports" / "eval.json").read_text())
    assert saved["device_layers"]["local/onnx-int8"] == layers["local/onnx-int8"]      # ... and keeps these

    assert main(["--config", str(toml), "explain", "onnx-int8", "--device", "local", "--json", "-n", "8"]) == 0
    view = json.loads(capsys.readouterr().out)
    rows = {r["layer"]: r for r in view["side_by_side"]}
    assert view["notes"] == [] and rows["node_Gemm_2"]["first_divergent"] and rows["node_Gemm_2"]["module"] == "fc3"
    assert rows["node_Gemm_2"]["device_cosine_min"] < 0.99 < rows["node_Gemm_0"]["device_cosine_min"]
    assert all(r["op_p50_ms"] is not None and r["host_sqnr_db"] is not None for r in rows.values())
    assert main(["--config", str(toml), "explain", "onnx-int8", "--device", "local", "-n", "8"]) == 0
    assert "first divergent layer on 'local': node_Gemm_2 (fc3)" in capsys.readouterr().out

    report = {"op_profiles": all_ops(cfg), "eval": saved}
    bars, line = op_time_plot(report, WIDE), fidelity_line_plot(report, WIDE)
    assert bars is not None and "node_Gemm_2 · QGemm" in bars and "onnx-int8 on local" in bars
    assert line is not None and "first divergent: node_Gemm_2 (fc3)" in line
    assert op_time_plot({"op_profiles": []}, WIDE) is None and fidelity_line_plot({"eval": {}}, WIDE) is None
