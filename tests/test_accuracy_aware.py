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
    assert rec["before"]["cosine_mean"] < 0.999               # plain INT8 misses the budget ...
    assert rec["quantized_layers"] == 6 and rec["max_float_layers"] == 1
    assert rec["ranking_metric"].startswith("gain_if_float")
    culprit = rec["ranking"][0]
    # ... fc1 (ranked first) is the one layer off INT8: 16-bit activations and float both meet the
    # budget at k = 1 (stages 2 and 3 side by side), and the faster of the two ships
    assert [s.get("kept_float") or s.get("int16_activations") for s in rec["steps"]] == [[culprit], [culprit]]
    assert all(s["met"] for s in rec["steps"]) and rec["final"]["cosine_mean"] >= 0.999
    assert rec["status"] in ("met by fallback", "met by int16 activations")
    model = onnx.load(str(cfg.artifacts_dir / "onnx-int8" / "model.onnx"))
    quantized = {n.name for n in quantized_nodes(model)}
    if rec["status"] == "met by fallback":
        assert [r["module"] for r in rec["reverted"]] == ["fc1"] and m.recipe["kept_float"] == [culprit]
        assert any("1 of 6 layers kept in float to meet min cosine 0.999 (was cosine" in e for e in events)
        # the artifact really computes fc1 in float: no DequantizeLinear feeds it
        assert culprit not in quantized and len(quantized) == 5
    else:
        assert m.recipe["int16_activations"]["layers"] == [culprit] and "kept_float" not in m.recipe
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
    assert "plain INT8" in err and "float x1" in err and "meets min cosine 0.999" in err
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


# -- issue 26: badly broken models, the staged search, the fastest build ---------------------------
STRICT = [{"device": "*", "target": "*", "precision": "int8", "min_cosine": 0.99}]
# the layers that rescue each model (tests/models.py says why), by module
RESCUE = {"tiny_vit": {"attn"}, "outlier_mlp12": {"trunk.0"}}


# TFLite's per-layer report re-quantizes in PT2E once per layer (minutes on a busy 2-core host): slow
@pytest.fixture(scope="module", params=[pytest.param((m, t), id=f"{m}-{t}", marks=[pytest.mark.slow] if t == "tflite" else [])
                                        for m in RESCUE for t in ("onnx", "tflite")])
def rescued(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """A model whose plain INT8 is below the export bound, exported under min cosine 0.99."""
    from edgeship.exporting.pipeline import export

    model, target = request.param
    cfg = tiny_config(tmp_path_factory.mktemp(f"aa-{model}-{target}"), model, budgets=STRICT,
                      targets={target: {"precisions": ["int8"]}})
    events: list[str] = []
    (m,) = export(cfg, (Target(target),), (Precision.INT8,), on_event=events.append)
    return model, target, cfg, m, events


def test_broken_int8_is_the_search_start_and_ships_meeting_the_budget(rescued) -> None:
    from edgeship.exporters.base import MIN_EXPORT_COSINE
    from edgeship.measure.evaluate import evaluate

    model, target, cfg, m, events = rescued
    rec = m.recipe["accuracy_aware"]
    # plain INT8 is below the export bound (today's refusal) ...
    assert rec["before"]["cosine_min"] < MIN_EXPORT_COSINE[Precision.INT8], rec["before"]
    # ... and the search ships a build that meets the budget, judged by eval too
    assert rec["status"].startswith("met by") and rec["final"]["cosine_mean"] >= 0.99
    assert m.recipe["fidelity_check"]["bound_deferred"] and m.recipe["fidelity_check"]["cosine_min"] >= 0.9
    report = evaluate(cfg, (Target(target),), (Precision.INT8,))
    assert report["entries"][f"local/{target}-int8"]["cosine_mean"] >= 0.99
    # the layers kept float are named, none empty, and are exactly the ones that rescue it
    kept = m.recipe.get("kept_float") or []
    assert all(kept) and kept == rec["final"]["kept_float"]
    modules = {r["module"] for r in rec["reverted"]}
    int16 = (m.recipe.get("int16_activations") or {}).get("layers", [])
    assert modules == RESCUE[model] or int16, (modules, int16)
    # every candidate is listed with cosine, size and (where it met) speed; the winner says why
    names = [c["name"] for c in rec["candidates"]]
    assert names[0] == "plain INT8" and rec["winner"]["name"] in names
    winner = next(c for c in rec["candidates"] if c["name"] == rec["winner"]["name"])
    assert winner["met"] and winner["median_ms"] > 0 and winner["size_bytes"] > 0
    assert all(c["median_ms"] for c in rec["candidates"] if c.get("met"))
    assert "fastest of" in rec["winner"]["why"] and "plain INT8" in rec["winner"]["why"]
    # staged: calibration first (tried, and not enough), then the per-layer stages
    assert rec["stages"][0]["stage"] == "calibration" and rec["stages"][0]["tried"]
    assert any(c["stage"] == "calibration" for c in rec["candidates"])
    assert any("misses min cosine 0.99; searching" in e for e in events)


def test_without_a_budget_the_export_bound_still_refuses_broken_int8(tmp_path: Path) -> None:
    from edgeship.exporting.failures import ExportIncomplete
    from edgeship.exporting.pipeline import export

    cfg = tiny_config(tmp_path, "outlier_mlp12", budgets=[], targets=ONNX_INT8)
    with pytest.raises(ExportIncomplete) as info:
        export(cfg, (Target.ONNX,), (Precision.INT8,))
    (failure,) = info.value.failures
    assert "min cosine" in failure.reason and "< 0.9" in failure.reason
    assert not (cfg.artifacts_dir / "onnx-int8").exists()


def test_a_budget_the_plain_build_meets_runs_no_search_but_the_bound_judges_it(tmp_path: Path) -> None:
    """A loose budget plain INT8 meets: no candidate is built; the bound, deferred, still refuses it."""
    from edgeship.exporting.failures import ExportIncomplete
    from edgeship.exporting.pipeline import export

    cfg = tiny_config(tmp_path, "outlier_mlp12", targets=ONNX_INT8,
                      budgets=[{**STRICT[0], "min_cosine": 0.1}])
    events: list[str] = []
    with pytest.raises(ExportIncomplete) as info:
        export(cfg, (Target.ONNX,), (Precision.INT8,), on_event=events.append)
    assert not any("searching" in e for e in events)
    assert "after the accuracy-aware search" in info.value.failures[0].reason
    assert not (cfg.artifacts_dir / "onnx-int8").exists()


def test_transformer_scope_keeps_attention_matmuls_and_softmax_float(tmp_path: Path) -> None:
    """ORT's QDQ MatMul ignores MatMulConstBOnly: the scope names the attention MatMuls itself.
    Counted in the exported graph: the integer (DQ-fed) ops are the Linear layers' MatMuls only."""
    import onnx

    from edgeship.exporters._onnx_int8_scope import attention_matmuls
    from edgeship.exporters._onnx_layers import quantized_nodes
    from edgeship.exporting.pipeline import export

    cfg = tiny_config(tmp_path, "bert_embedder", budgets=[], targets=ONNX_INT8)
    (m,) = export(cfg, (Target.ONNX,), (Precision.INT8,))
    g = onnx.load(str(cfg.artifacts_dir / "onnx-int8" / "model.onnx"))
    assert m.recipe["scope"].startswith("transformer")
    dq_out = {n.output[0] for n in g.graph.node if n.op_type == "DequantizeLinear"}
    # an integer MatMul/Gemm: activation and weight both dequantized (a QDQ node unit ORT runs in int8)
    integer = {n.name for n in g.graph.node if n.op_type in ("MatMul", "Gemm") and all(i in dq_out for i in n.input[:2])}
    layers, linears = 2, 6      # q, k, v, attention output, two feed-forward
    assert len(integer) == layers * linears, integer
    assert {n.name for n in quantized_nodes(g, ["MatMul", "Gemm"])} == integer
    assert len(m.recipe["float_by_scope"]) == 2 * layers          # scores and scores x V, per layer
    attention = set(attention_matmuls(cfg.artifacts_dir / "onnx-int8" / "model.onnx"))
    assert attention == set(m.recipe["float_by_scope"]) and not attention & integer
    assert not any(i in dq_out for n in g.graph.node if n.name in attention for i in n.input)
    softmax = [n for n in g.graph.node if n.op_type == "Softmax"]
    assert len(softmax) == layers and not any(i in dq_out for n in softmax for i in n.input)


def test_unnamed_nodes_get_stable_nonempty_ids(tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    from edgeship.exporters._onnx_names import name_nodes

    def graph() -> Path:
        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
        y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
        nodes = [helper.make_node("HardSigmoid", ["x"], ["a"]), helper.make_node("Mul", ["x", "a"], ["b"]),
                 helper.make_node("HardSigmoid", ["b"], ["c"], name="HardSigmoid_unnamed_1"),
                 helper.make_node("HardSigmoid", ["c"], ["d"]), helper.make_node("Mul", ["c", "d"], ["y"])]
        path = tmp_path / f"g{len(list(tmp_path.iterdir()))}.onnx"
        onnx.save(helper.make_model(helper.make_graph(nodes, "g", [x], [y])), str(path))
        return path

    a, b = graph(), graph()
    assert name_nodes(a) == 4 and name_nodes(b) == 4 and name_nodes(a) == 0
    names = [n.name for n in onnx.load(str(a)).graph.node]
    assert all(names) and len(set(names)) == len(names)
    assert names == [n.name for n in onnx.load(str(b)).graph.node]     # the same ids on every build


@pytest.mark.slow
def test_bert6_search_is_quick_and_meets_or_exits_1_publishing_nothing(tmp_path: Path) -> None:
    """A 6-layer BERT-style encoder on ONNX static INT8 under min cosine 0.99: the search ends
    within 3x the plain INT8 export's time, and either ships a build meeting the budget or fails
    with the table and nothing published."""
    import re

    from edgeship.exporting.pipeline import export_all

    cfg = tiny_config(tmp_path, "bert6", budgets=STRICT, targets=ONNX_INT8)
    events: list[str] = []
    summary = export_all(cfg, (Target.ONNX,), (Precision.INT8,), on_event=events.append)
    timing = [e for e in events if "accuracy-aware search:" in e]
    art = cfg.artifacts_dir / "onnx-int8"
    if summary.failures:
        (failure,) = summary.failures
        assert "misses min cosine 0.99" in failure.reason and not art.exists()
        assert any(e.startswith("build ") for e in events)      # the table of what was tried
    else:
        (m,) = summary.built
        rec = m.recipe["accuracy_aware"]
        assert rec["final"]["cosine_mean"] >= 0.99 and art.is_dir()
        if rec["status"] == "met":      # plain INT8 met it: no search ran
            assert not timing and "candidates" not in rec
            return
        assert rec["seconds"] <= 3 * rec["plain_export_seconds"], rec
        # only quantized compute ops were ranked; no Reshape/Transpose/bias-Add rows
        assert all(c.get("error") is None for c in rec["candidates"])
    (line,) = timing
    search_s, plain_s = map(float, re.findall(r"([\d.]+) s", line))
    assert search_s <= 3 * plain_s, line


def test_coreml_int8_of_a_model_jit_cannot_trace_takes_the_pt2e_path(tmp_path: Path) -> None:
    """nn.MultiheadAttention's calibrated module fails torch.jit.trace's sanity checks: the
    PT2E path captures it with torch.export instead, and the manifest says which step failed."""
    from edgeship.exporting.failures import ExportIncomplete
    from edgeship.exporting.pipeline import export

    cfg = tiny_config(tmp_path, "tiny_vit", budgets=[], targets={"coreml": {"precisions": ["int8"]}})
    try:
        (m,) = export(cfg, (Target.COREML,), (Precision.INT8,))
    except ExportIncomplete as exc:
        # this ViT's plain W8A8 is broken (its simulation under the INT8 bound fails the export,
        # issue 25): the failure must still say the PT2E path was the one taken, and why not jit
        (failure,) = exc.failures
        assert "PT2E quantize/dequantize module" in failure.reason and "min cosine" in failure.reason, failure.reason
        return
    assert "PT2E" in m.recipe["quantizer"]
    assert m.recipe["why_pt2e"].startswith(("torch.jit.trace of the calibrated module failed",
                                            "coremltools' LinearQuantizer needs torch.fx"))
