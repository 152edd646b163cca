"""ONNX exporter: the demo and the tiny models in every precision, checked by onnxruntime."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgeship.artifact.atomic import sha256_file
from edgeship.artifact.manifest import read_manifest
from edgeship.types import Precision, Target
from tests.conftest import tiny_config

ONNX_PRECISIONS = (Precision.FP32, Precision.FP16, Precision.INT8, Precision.INT8_DYNAMIC)


def test_demo_manifests_match_files(demo_project) -> None:
    cfg, _ = demo_project
    for p in ONNX_PRECISIONS:
        d = cfg.artifacts_dir / f"onnx-{p}"
        m = read_manifest(d)
        assert m.target == "onnx" and m.precision == p.value
        for rel, meta in m.files.items():
            assert sha256_file(d / rel) == meta["sha256"]
        assert m.versions["onnxruntime"] != "not installed"
        assert m.recipe["fidelity_check"]["cosine_min"] > 0.99
    int8 = read_manifest(cfg.artifacts_dir / "onnx-int8")
    assert int8.calibration == {"method": "minmax", "samples": 256, "source": "edgeship.demo:calibration_data"}
    assert int8.recipe["format"] == "QDQ" and int8.recipe["activation_type"] in ("uint8", "int8")
    # built for this host's CPU class (the demo's budgets name only "local"), candidates recorded
    from edgeship.runtimes.cpuinfo import cpu_features

    assert int8.built_for and int8.built_for["cpu_class"] == cpu_features()["cpu_class"]
    assert int8.recipe["recipe"] == int8.built_for["recipe"] and int8.built_for["why"]
    assert all(c.get("cosine_mean") for c in int8.built_for["candidates"])    # measured natively here
    # fp32 is a single file: no external data for a small model
    assert list(read_manifest(cfg.artifacts_dir / "onnx-fp32").files) == ["model.onnx"]


def test_fp16_keeps_float32_io_and_halves_weights(demo_project) -> None:
    import onnx

    cfg, _ = demo_project
    m = onnx.load(str(cfg.artifacts_dir / "onnx-fp16" / "model.onnx"))
    assert m.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert m.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in m.graph.initializer)
    fp32 = read_manifest(cfg.artifacts_dir / "onnx-fp32").size_bytes
    assert read_manifest(cfg.artifacts_dir / "onnx-fp16").size_bytes < 0.65 * fp32


@pytest.mark.parametrize("name", ["tiny_encoder", "depthwise_cnn"])
def test_tiny_models_export_in_every_precision(name: str, tmp_path: Path) -> None:
    from edgeship.artifact.inprocess import run_artifact
    from edgeship.artifact.selection import find_artifacts
    from edgeship.exporting.pipeline import export
    from edgeship.metrics import fidelity
    from edgeship.model.reference import load_reference, run_reference
    from tests.models import heldout_feeds

    cfg = tiny_config(tmp_path, name)
    export(cfg, (Target.ONNX,), ONNX_PRECISIONS)
    model = load_reference(cfg)
    feeds = heldout_feeds(name)
    ref = [run_reference(model, f, cfg.model.inputs) for f in feeds]
    bound = {"fp32": 0.9999, "fp16": 0.999, "int8": 0.95, "int8-dynamic": 0.98}
    for art in find_artifacts(cfg, (Target.ONNX,)):
        fid = fidelity(ref, run_artifact(art, feeds))
        assert fid["cosine_min"] >= bound[art.precision.value], (art.name, fid)
    if name == "tiny_encoder":
        m = read_manifest(cfg.artifacts_dir / "onnx-fp32")
        assert [i.dtype for i in m.inputs] == ["int64", "int64"]


def test_fp16_overflow_is_an_export_error(tmp_path: Path) -> None:
    """A model whose activations exceed float16's range must not produce an artifact."""
    from edgeship.errors import ExportError
    from edgeship.exporting.pipeline import export
    from tests.conftest import make_config

    cfg = make_config(tmp_path, model={
        "name": "overflow", "factory": "tests.models:overflow_net", "outputs": ["y"],
        "inputs": [{"name": "x", "shape": [1, 4], "dtype": "float32"}],
    }, data={})
    with pytest.raises(ExportError, match="inf/NaN"):
        export(cfg, (Target.ONNX,), (Precision.FP16,))
    assert not (cfg.artifacts_dir / "onnx-fp16").exists()
    assert not [p for p in cfg.artifacts_dir.iterdir() if p.name.startswith(".")]
