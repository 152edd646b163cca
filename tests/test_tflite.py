"""TFLite exporter and LiteRT runtime: demo, tiny models, failures."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgeship.artifact.manifest import read_manifest
from edgeship.cli import main
from edgeship.types import Precision, Target
from tests.conftest import cli_project, make_config, tiny_config

TFLITE_PRECISIONS = ("fp32", "fp16", "int8", "int8-dynamic", "int8-weight")


def test_demo_tflite_artifacts(demo_project) -> None:
    cfg, _ = demo_project
    sizes = {}
    for p in TFLITE_PRECISIONS:
        m = read_manifest(cfg.artifacts_dir / f"tflite-{p}")
        assert m.runtime == "litert" and m.model_file == "model.tflite"
        assert m.versions["litert-torch"] != "not installed"
        sizes[p] = m.size_bytes
    for p in ("int8", "int8-dynamic", "int8-weight"):
        assert sizes[p] < 0.4 * sizes["fp32"], sizes
    assert sizes["fp16"] < 0.65 * sizes["fp32"]
    int8 = read_manifest(cfg.artifacts_dir / "tflite-int8")
    assert int8.recipe["activation_observer"] == "MinMaxObserver"
    assert int8.calibration and int8.calibration["samples"] == 256


def test_demo_tflite_fidelity(demo_project) -> None:
    import json

    cfg, _ = demo_project
    entries = json.loads((cfg.build / "reports" / "eval.json").read_text())["entries"]
    ev = {e["artifact"]: e for e in entries.values() if e["device"] == "local"}
    assert ev["tflite-fp32"]["cosine_min"] >= 0.9999
    assert ev["tflite-fp16"]["cosine_mean"] >= 0.999
    assert ev["tflite-int8"]["accuracy_drop"] <= 0.01
    assert ev["tflite-int8-dynamic"]["accuracy_drop"] <= 0.01


@pytest.mark.parametrize("name", ["tiny_encoder", "depthwise_cnn"])
def test_tiny_models_tflite(name: str, tmp_path: Path) -> None:
    from edgeship.artifact.inprocess import run_artifact
    from edgeship.artifact.selection import find_artifacts
    from edgeship.exporting.pipeline import export
    from edgeship.metrics import fidelity
    from edgeship.model.reference import load_reference, run_reference
    from tests.models import heldout_feeds

    cfg = tiny_config(tmp_path, name)
    export(cfg, (Target.TFLITE,), (Precision.FP32, Precision.INT8))
    model = load_reference(cfg)
    feeds = heldout_feeds(name)
    ref = [run_reference(model, f, cfg.model.inputs) for f in feeds]
    for art in find_artifacts(cfg, (Target.TFLITE,)):
        fid = fidelity(ref, run_artifact(art, feeds))
        assert fid["cosine_min"] >= (0.9999 if art.precision is Precision.FP32 else 0.99), (art.name, fid)
    int8 = read_manifest(cfg.artifacts_dir / "tflite-int8")
    assert int8.recipe["graph_capture"] == "torch.export strict"
    if name == "tiny_encoder":   # int64 ids keep their dtype; the converter's int32 narrowing is recorded
        fp32 = read_manifest(cfg.artifacts_dir / "tflite-fp32")
        assert [i.dtype for i in fp32.inputs] == ["int64", "int64"]
        assert {k: (c["from"], c["to"]) for k, c in fp32.recipe["input_casts"].items()} == {
            "input_ids": ("int64", "int32"), "attention_mask": ("int64", "int32")}
        # softmax, layer norm and attention matmuls have no PT2E int8 pattern: listed, not hidden
        assert int8.recipe["integer_graph"]["float_ops"].get("SOFTMAX") == 1
        assert any(n.startswith("not fully integer: ") for n in int8.notes)
    else:   # conv/depthwise/add (chained residuals too)/mean/fc: every op computes in int8
        assert int8.recipe["integer_graph"] == {"float_ops": {}, "requantize_ops": 0}
        assert int8.notes == []


def test_non_strict_capture_is_recorded_and_still_fully_integer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """When strict torch.export cannot trace a model, the int8 export still works, captured
    non-strict (recorded), and its residual ADDs are still int8: matched by ATen target."""
    import torch

    from edgeship.exporting.pipeline import export

    real = torch.export.export

    def no_strict(*args, strict: bool = False, **kwargs):
        if strict:
            raise torch._dynamo.exc.Unsupported("graph break in a test double of an untraceable model")
        return real(*args, strict=False, **kwargs)

    monkeypatch.setattr(torch.export, "export", no_strict)
    cfg = tiny_config(tmp_path, "depthwise_cnn")
    export(cfg, (Target.TFLITE,), (Precision.INT8,))
    m = read_manifest(cfg.artifacts_dir / "tflite-int8")
    assert m.recipe["graph_capture"] == "torch.export non-strict (strict failed)"
    assert [n for n in m.notes if n.startswith("strict torch.export failed (Unsupported: graph break")]
    assert m.recipe["integer_graph"] == {"float_ops": {}, "requantize_ops": 0}


def test_pt2_source_int8_is_fully_integer(tmp_path: Path) -> None:
    """A saved torch.export program records ATen overloads, not Python operators, as sources:
    its residual ADDs are int8 all the same."""
    import torch

    from edgeship.exporting.pipeline import export
    from tests.models import TINY_MODELS, depthwise_cnn

    program = torch.export.export(depthwise_cnn(), (torch.rand(1, 3, 32, 32),))
    torch.export.save(program, tmp_path / "dw.pt2")
    m = TINY_MODELS["depthwise_cnn"]
    model = {"name": m.name, "source": str(tmp_path / "dw.pt2"), "outputs": list(m.outputs),
             "inputs": [s.model_dump(exclude_none=True) for s in m.inputs]}
    cfg = make_config(tmp_path, model=model, data={"calibration": m.calibration, "calibration_samples": 16})
    export(cfg, (Target.TFLITE,), (Precision.INT8,))
    recipe = read_manifest(cfg.artifacts_dir / "tflite-int8").recipe
    assert recipe["integer_graph"] == {"float_ops": {}, "requantize_ops": 0}, recipe["graph_capture"]


def test_unlowerable_op_names_op_and_target(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = cli_project(tmp_path, {
        'factory = "edgeship.demo:build_model"': 'factory = "tests.models:erfinv_net"',
        'outputs = ["logits"]': 'outputs = ["y"]',
        'inputs = [{ name = "image", shape = [1, 1, 8, 8], dtype = "float32" }]':
            'inputs = [{ name = "x", shape = [1, 8], dtype = "float32" }]',
        'calibration = "edgeship.demo:calibration_data"': '',
        'evaluation = "edgeship.demo:evaluation_data"': '',
    })
    code = main(["--config", str(cfg), "export", "--target", "tflite", "--precision", "fp32"])
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 1      # a conversion failed (contract 6); bad input would be 2
    assert "aten.erfinv" in line and "tflite" in line
    root = tmp_path / "build" / "artifacts" / "digits_cnn"
    assert not root.exists() or not any(root.iterdir())


def test_entropy_calibration_is_rejected_for_tflite(tmp_path: Path) -> None:
    from edgeship.errors import UsageError
    from edgeship.exporting.pipeline import export

    cfg = make_config(tmp_path, quantization={"method": "entropy"})
    with pytest.raises(UsageError, match="tflite int8 supports 'minmax' and 'percentile'"):
        export(cfg, (Target.TFLITE,), (Precision.INT8,))
    assert not (cfg.artifacts_dir / "tflite-int8").exists()


def test_litert_import_fallback_order(monkeypatch: pytest.MonkeyPatch) -> None:
    """With ai_edge_litert missing the runtime must try tflite_runtime, then tensorflow.lite."""
    import importlib

    from edgeship.runtimes import litert
    from edgeship.runtimes.base import RuntimeUnavailable

    tried: list[str] = []
    real = importlib.import_module

    def fake_import(name: str, package: str | None = None):
        tried.append(name)
        top = name.split(".")[0]
        raise ModuleNotFoundError(f"No module named '{top}'", name=top)

    monkeypatch.setattr(importlib, "import_module", fake_import)
    with pytest.raises(RuntimeUnavailable, match="pip install ai-edge-litert"):
        litert._interpreter_module()
    monkeypatch.setattr(importlib, "import_module", real)
    assert tried == ["ai_edge_litert.interpreter", "tflite_runtime.interpreter", "tensorflow.lite"]


@pytest.fixture(scope="module")
def int8_io_demo(tmp_path_factory: pytest.TempPathFactory):
    """The demo exported once to tflite-int8 with io = "int8"."""
    from edgeship.exporting.pipeline import export

    tmp = tmp_path_factory.mktemp("int8io")
    cfg = make_config(tmp, targets={"tflite": {"io": "int8"}})
    export(cfg, (Target.TFLITE,), (Precision.INT8,))
    return cfg


def test_int8_io_records_scale_and_zero_point_and_runs(int8_io_demo) -> None:
    import numpy as np

    from edgeship.artifact.inprocess import run_artifact
    from edgeship.artifact.selection import find_artifacts
    from edgeship.calibration import evaluation_samples
    from edgeship.metrics import accuracy

    cfg = int8_io_demo
    m = read_manifest(cfg.artifacts_dir / "tflite-int8")
    (inp,), (out,) = m.inputs, m.outputs
    assert inp.dtype == "int8" and out.dtype == "int8"
    assert inp.quantization and inp.quantization["scale"] > 0 and -128 <= inp.quantization["zero_point"] <= 127
    assert out.quantization and out.quantization["scale"] > 0
    assert m.recipe["io"].startswith("int8")
    # the runtime quantizes float feeds with the recorded params and dequantizes the logits
    samples = evaluation_samples(cfg)[:64]
    (ref,) = find_artifacts(cfg, (Target.TFLITE,), (Precision.INT8,))
    outs = run_artifact(ref, [s.inputs for s in samples])
    assert outs[0][0].dtype == np.float32
    assert accuracy(outs, [s.label for s in samples]) >= 0.9


def test_int8_io_manifest_matches_interpreter(int8_io_demo) -> None:
    from ai_edge_litert.interpreter import Interpreter

    m = read_manifest(int8_io_demo.artifacts_dir / "tflite-int8")
    it = Interpreter(model_path=str(int8_io_demo.artifacts_dir / "tflite-int8" / "model.tflite"))
    scale, zero = it.get_input_details()[0]["quantization"]
    assert m.inputs[0].quantization == {"scale": pytest.approx(scale), "zero_point": zero}


def test_int8_float_io_default_has_float_edges(demo_project) -> None:
    from ai_edge_litert.interpreter import Interpreter

    cfg, _ = demo_project
    m = read_manifest(cfg.artifacts_dir / "tflite-int8")
    assert m.inputs[0].dtype == "float32" and m.inputs[0].quantization is None
    assert "QUANTIZE/DEQUANTIZE" in m.recipe["io"]
    it = Interpreter(model_path=str(cfg.artifacts_dir / "tflite-int8" / "model.tflite"))
    assert it.get_input_details()[0]["dtype"].__name__ == "float32"
    assert it.get_output_details()[0]["dtype"].__name__ == "float32"


def test_percentile_calibration_uses_the_histogram_observer(tmp_path: Path) -> None:
    from edgeship.exporting.pipeline import export

    cfg = make_config(tmp_path, quantization={"method": "percentile"},
                      data={"calibration": "edgeship.demo:calibration_data", "calibration_samples": 16})
    export(cfg, (Target.TFLITE,), (Precision.INT8,))
    m = read_manifest(cfg.artifacts_dir / "tflite-int8")
    assert m.recipe["activation_observer"] == "HistogramObserver" and m.recipe["calibration_method"] == "percentile"
    assert m.calibration == {"method": "percentile", "samples": 16, "source": "edgeship.demo:calibration_data"}
    assert m.recipe["fidelity_check"]["cosine_min"] >= 0.9
