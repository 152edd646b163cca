"""LiteRT runtime on real artifacts: input mapping by name, int8 I/O, metadata, failures."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from edgeship.runtimes.base import RuntimeLoadError, RuntimeRunError, get_runtime
from edgeship.types import Precision, Target
from tests.conftest import make_config, tiny_config


@pytest.fixture(scope="module")
def encoder(tmp_path_factory: pytest.TempPathFactory):
    """tiny_encoder (two int inputs) exported once to tflite-fp32."""
    from edgeship.exporting.pipeline import export

    cfg = tiny_config(tmp_path_factory.mktemp("enc"), "tiny_encoder")
    export(cfg, (Target.TFLITE,), (Precision.FP32,))
    return cfg


@pytest.fixture(scope="module")
def int8_io(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from edgeship.exporting.pipeline import export

    cfg = make_config(tmp_path_factory.mktemp("int8io"), targets={"tflite": {"io": "int8"}},
                      data={"calibration": "edgeship.demo:calibration_data", "calibration_samples": 32})
    export(cfg, (Target.TFLITE,), (Precision.INT8,))
    return cfg.artifacts_dir / "tflite-int8"


def _manifest(d: Path) -> dict:
    return json.loads((d / "manifest.json").read_text())


def test_two_inputs_are_mapped_by_name_not_feed_order(encoder) -> None:
    from edgeship.model.reference import load_reference, run_reference

    d = encoder.artifacts_dir / "tflite-fp32"
    m = _manifest(d)
    rng = np.random.default_rng(3)
    ids = rng.integers(0, 64, (1, 16)).astype(np.int32)
    mask = np.ones((1, 16), np.int32)
    mask[0, 10:] = 0   # a mask that differs from the ids: swapping them would change the output
    ref = run_reference(load_reference(encoder), {"input_ids": ids.astype(np.int64), "attention_mask": mask.astype(np.int64)},
                        encoder.model.inputs)[0]
    with get_runtime("litert")(str(d / "model.tflite"), m, threads=2) as rt:
        out = rt.run({"attention_mask": mask, "input_ids": ids})   # dict order reversed on purpose
        desc = rt.describe()
    assert np.allclose(out["logits"], ref, atol=1e-4), (out["logits"], ref)
    assert desc["threads"] == 2 and desc["delegate"].startswith("XNNPACK") and desc["interpreter"] == "ai-edge-litert"


def test_int8_io_quantizes_with_the_models_own_parameters(int8_io: Path) -> None:
    m = _manifest(int8_io)
    assert m["inputs"][0]["dtype"] == "int8" and m["outputs"][0]["dtype"] == "int8"
    x = np.random.default_rng(0).uniform(0, 1, (1, 1, 8, 8)).astype(np.float32)
    with get_runtime("litert")(str(int8_io / "model.tflite"), m) as rt:
        prepared_raw = rt.prepare({"image": x})
        out = rt.finish(rt.invoke(prepared_raw))
        q = m["inputs"][0]["quantization"]
        fed = rt._it.get_tensor(rt._in_details[0]["index"])
    assert fed.dtype == np.int8
    assert np.array_equal(fed, np.clip(np.round(x / q["scale"]) + q["zero_point"], -128, 127).astype(np.int8))
    assert out["logits"].dtype == np.float32 and out["logits"].shape == (1, 10)


def test_manifest_scale_that_disagrees_with_the_model_is_a_load_error(int8_io: Path, tmp_path: Path) -> None:
    m = _manifest(int8_io)
    m["inputs"][0]["quantization"]["scale"] *= 2
    rt = get_runtime("litert")(str(int8_io / "model.tflite"), m)
    with pytest.raises(RuntimeLoadError, match="tensor 'image': manifest says int8 scale="), rt:
        pass


def test_wrong_shape_and_corrupt_file(encoder, tmp_path: Path) -> None:
    d = encoder.artifacts_dir / "tflite-fp32"
    m = _manifest(d)
    with get_runtime("litert")(str(d / "model.tflite"), m) as rt, \
            pytest.raises(RuntimeRunError, match=r"input 'input_ids' has shape \[1, 8\]"):
        rt.run({"input_ids": np.zeros((1, 8), np.int32), "attention_mask": np.ones((1, 16), np.int32)})
    bad = tmp_path / "model.tflite"
    shutil.copy(d / "model.tflite", bad)
    bad.write_bytes(b"\x00garbage" * 64)
    with pytest.raises(RuntimeLoadError, match="litert: cannot load"), get_runtime("litert")(str(bad), m):
        pass


def test_version_names_the_interpreter_package() -> None:
    import importlib.metadata

    assert get_runtime("litert").version() == "ai-edge-litert " + importlib.metadata.version("ai-edge-litert")
