"""Accuracy-aware INT8 (issue 15) on ONNX, with models built to need it (tests/models.py):

- ``outlier_mlp``: two input channels ~50x the rest; plain INT8 misses min cosine 0.999, and
  keeping its first Linear (``fc1``, the input's only consumer) float meets it;
- ``outlier_chain``: every hidden tensor has outliers; one layer in float (20% of 6) cannot
  meet the budget, so the export exits 1, prints what it tried, and ships nothing.

The numbers are measured on this host's CPU class, which is what the artifact is built for.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgeship.cli import main
from edgeship.types import Precision, Target
from tests.conftest import tiny_config

BUDGET = [{"device": "*", "target": "*", "precision": "int8", "min_cosine": 0.999}]
ONNX_INT8 = {"onnx": {"precisions": ["int8"]}}

TOML = """\
[model]
name = "{name}"
factory = "tests.models:{name}"
outputs = ["logits"]
inputs = [{{ name = "x", shape = [1, 32], dtype = "float32" }}]

[data]
calibration = "tests.models:outlier_batches"
calibration_samples = 16

[quantization]
accuracy_aware = {aware}
min_cosine = 0.999

[targets.onnx]
precisions = ["int8"]
"""


def _project(tmp: Path, name: str, aware: bool) -> Path:
    path = tmp / "edgeship.toml"
    path.write_text(TOML.format(name=name, aware=str(aware).lower()))
    return path


@pytest.fixture(scope="module")
def fixed(tmp_path_factory: pytest.TempPathFactory):
    """outlier_mlp exported to onnx-int8 under a min cosine 0.999 budget: (config, manifest, events)."""
    from edgeship.exporting.pipeline import export

    cfg = tiny_config(tmp_path_factory.mktemp("aa-fixed"), "outlier_mlp", budgets=BUDGET, targets=ONNX_INT8)
    events: list[str] = []
    (m,) = export(cfg, (Target.ONNX,), (Precision.INT8,), on_event=events.append)
    return cfg, m, events


def test_fallback_keeps_exactly_the_culprit_float_and_meets_the_budget(fixed) -> None:
    import onnx

    from edgeship.exporters._onnx_layers import quantized_nodes
    from edgeship.measure.evaluate import evaluate

    cfg, m, events = fixed
    rec = m.recipe["accuracy_aware"]
    assert rec["status"] == "met by fallback"
    assert rec["before"]["cosine_mean"] < 0.999               # plain INT8 misses the budget ...
    assert [r["module"] for r in rec["reverted"]] == ["fc1"]  # ... and fc1 alone is reverted
    assert m.recipe["kept_float"] == [rec["reverted"][0]["layer"]]
    assert rec["ranking"][0] == rec["reverted"][0]["layer"]
    assert rec["quantized_layers"] == 6 and rec["max_float_layers"] == 1
    assert rec["ranking_metric"].startswith("gain_if_float")
    assert len(rec["steps"]) == 1 and rec["steps"][0]["met"] and rec["final"]["cosine_mean"] >= 0.999
    assert any("1 of 6 layers kept in float to meet min cosine 0.999 (was cosine" in e for e in events)
    # the artifact really computes fc1 in float: no DequantizeLinear feeds it
    model = onnx.load(str(cfg.artifacts_dir / "onnx-int8" / "model.onnx"))
    quantized = {n.name for n in quantized_nodes(model)}
    assert m.recipe["kept_float"][0] not in quantized and len(quantized) == 5
    # and eval (what the gate judges) agrees on the evaluation data
    report = evaluate(cfg, (Target.ONNX,), (Precision.INT8,))
    assert report["entries"]["local/onnx-int8"]["cosine_mean"] >= 0.999
    # eval keeps the per-layer report the search stored (the all-INT8 build, culprit first)
    layers = report["layers"]["onnx-int8"]
    assert layers["layers"][0]["module"] == "fc1"
    assert layers["build"].startswith("all-INT8")
    # the HTML report plots it (worst first, the culprit's module named)
    from edgeship.reports.html import SECTIONS

    section = dict(SECTIONS)["Per-layer INT8 error (worst 20)"]({"eval": report})
    assert section is not None and "<svg" in section and "fc1" in section and "if float" in section


def test_a_class_this_host_cannot_run_is_not_searched(tmp_path: Path) -> None:
    """Built for arm64 on x86 (no arm64 emulation for ORT here): the host's kernels must not decide
    a fallback for the device, so nothing is reverted and the decision is recorded."""
    from edgeship.exporting.pipeline import export

    cfg = tiny_config(tmp_path, "outlier_mlp", targets=ONNX_INT8,
                      devices={"pi": {"kind": "ssh", "host": "pi.invalid", "cpu_class": "arm64-dotprod"}},
                      budgets=[{**BUDGET[0], "device": "pi"}])
    events: list[str] = []
    (m,) = export(cfg, (Target.ONNX,), (Precision.INT8,), on_event=events.append, for_devices=("pi",))
    rec = m.recipe["accuracy_aware"]
    assert m.built_for["cpu_class"] == "arm64-dotprod"
    assert rec["status"] == "not searched" and "arm64-dotprod" in rec["why"]
    assert "kept_float" not in m.recipe and (cfg.artifacts_dir / "onnx-int8").is_dir()
    assert any("not searched" in e for e in events)


def test_explain_sorts_worst_first_and_names_the_culprit(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    toml = _project(tmp_path, "outlier_mlp", aware=False)
    assert main(["-c", str(toml), "export"]) == 0
    capsys.readouterr()
    assert main(["-c", str(toml), "explain", "onnx-int8", "--json", "-n", "16"]) == 0
    rec = json.loads(capsys.readouterr().out)
    rows = rec["layers"]
    assert rows[0]["module"] == "fc1" and rows[0]["op_type"] == "Gemm"
    assert len(rows) == 6 and rec["kept_float"] == []
    gains = [r["gain_if_float"] for r in rows if r["gain_if_float"] is not None]
    assert gains == sorted(gains, reverse=True) and gains[0] > 0.5
    assert all(isinstance(r["sqnr_db"], float) for r in rows)
    assert "qdq_loss_debug" in rows[0]["tool"] and f"measured on {rec['cpu_class']}" in rows[0]["tool"]
    # the table, and the record in the eval report data
    assert main(["-c", str(toml), "explain", "onnx-int8", "-n", "16"]) == 0
    out = capsys.readouterr().out.splitlines()
    first = next(ln for ln in out if ln.startswith("1 "))
    assert "fc1" in first and "Gemm" in first
    data = json.loads((tmp_path / "build" / "reports" / "eval.json").read_text())
    assert data["layers"]["onnx-int8"]["layers"][0]["layer"] == rows[0]["layer"]


def test_unfixable_model_exits_1_with_the_table_and_ships_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    toml = _project(tmp_path, "outlier_chain", aware=True)
    assert main(["-c", str(toml), "export"]) == 1
    err = capsys.readouterr().err
    assert "all INT8" in err and "step 1" in err and "meets min cosine 0.999" in err
    assert "misses min cosine 0.999" in err and "more than 1 of 6 layers in float" in err
    assert "artifact was removed" in err
    art = tmp_path / "build" / "artifacts" / "outlier_chain"
    assert not (art / "onnx-int8").exists() and not (art / "onnx-int8").is_symlink()
    assert not any(art.iterdir())     # no version directory left behind either
    # what the ranking was based on stays readable
    data = json.loads((tmp_path / "build" / "reports" / "eval.json").read_text())
    assert "layers.onnx-int8" in err and len(data["layers"]["onnx-int8"]["layers"]) == 6


def test_budget_is_the_strictest_that_applies(tmp_path: Path) -> None:
    from edgeship.accuracy.budget import applicable_budget

    cfg = tiny_config(tmp_path, "outlier_mlp", quantization={"max_drop": 0.02}, budgets=[
        {"device": "*", "target": "onnx", "precision": "int8", "min_cosine": 0.99, "max_accuracy_drop": 0.01},
        {"device": "phone", "target": "*", "precision": "int8", "min_cosine": 0.9999},   # another device
        {"device": "*", "target": "tflite", "precision": "int8", "min_cosine": 0.9999},  # another target
        {"device": "local", "target": "*", "precision": "*", "min_cosine": 0.995},
    ])
    b = applicable_budget(cfg, "onnx", "int8", ("local",))
    assert (b.max_drop, b.min_cosine) == (0.01, 0.995)
    assert b.sources == ("[quantization]", "[[budgets]] #1", "[[budgets]] #4")
    assert b.met({"cosine_mean": 0.996, "accuracy_drop": 0.005})
    assert not b.met({"cosine_mean": 0.996, "accuracy_drop": 0.02})
    assert applicable_budget(cfg, "onnx", "fp16", ("local",)).min_cosine == 0.995
    off = tiny_config(tmp_path, "outlier_mlp", budgets=[])
    assert applicable_budget(off, "onnx", "int8", ("local",)) is None


def test_int8_dynamic_fallback_names_the_matmul_quantize_dynamic_sees(tmp_path: Path) -> None:
    """quantize_dynamic splits a Gemm into <node>_MatMul + <node>_Add before it honours
    nodes_to_exclude: the layer id must be that MatMul's name, or nothing is kept float."""
    from edgeship.exporting.pipeline import export

    cfg = tiny_config(tmp_path, "outlier_mlp", targets={"onnx": {"precisions": ["int8-dynamic"]}},
                      budgets=[{**BUDGET[0], "precision": "int8-dynamic"}])
    (m,) = export(cfg, (Target.ONNX,), (Precision.INT8_DYNAMIC,))
    rec = m.recipe["accuracy_aware"]
    assert rec["status"] == "met by fallback" and rec["before"]["cosine_mean"] < 0.999
    assert m.recipe["kept_float"] == ["node_linear_MatMul"] and [r["module"] for r in rec["reverted"]] == ["fc1"]
    assert rec["final"]["cosine_mean"] >= 0.999


def test_fallback_on_tflite_keeps_the_culprit_float_and_meets_the_budget(tmp_path: Path) -> None:
    """The same search on TFLite INT8 (PT2E quantizer's keep-float, exporters/_tflite_layers.py),
    measured with the real LiteRT interpreter: fc1 alone is reverted and eval meets the budget."""
    from edgeship.exporting.pipeline import export
    from edgeship.measure.evaluate import evaluate

    cfg = tiny_config(tmp_path, "outlier_mlp", budgets=BUDGET, targets={"tflite": {"precisions": ["int8"]}})
    events: list[str] = []
    (m,) = export(cfg, (Target.TFLITE,), (Precision.INT8,), on_event=events.append)
    rec = m.recipe["accuracy_aware"]
    assert rec["status"] == "met by fallback", rec
    assert rec["before"]["cosine_mean"] < 0.999
    assert [r["module"] for r in rec["reverted"]] == ["fc1"]
    assert m.recipe["kept_float"] == ["fc1"]
    assert m.recipe["integer_graph"]["float_ops"]          # the kept layer really computes in float
    report = evaluate(cfg, (Target.TFLITE,), (Precision.INT8,))
    assert report["entries"]["local/tflite-int8"]["cosine_mean"] >= 0.999
    assert any("layers kept in float to meet min cosine 0.999" in e for e in events)
