"""CoreML: conversion with torch 2.13, structural validation on Linux, SKIPPED profiling."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from edgeship.artifact.manifest import read_manifest
from edgeship.cli import main
from edgeship.types import Precision, Target
from tests.conftest import cli_project, make_config, tiny_config

ALL = (Precision.FP32, Precision.FP16, Precision.INT8, Precision.INT8_WEIGHT)


@pytest.fixture(scope="module")
def demo_coreml(tmp_path_factory: pytest.TempPathFactory):
    from edgeship.exporting.pipeline import export

    cfg = make_config(tmp_path_factory.mktemp("coreml"))
    export(cfg, (Target.COREML,), ALL)
    return cfg


def test_demo_precisions_are_really_in_the_weights(demo_coreml) -> None:
    v = {p.value: read_manifest(demo_coreml.artifacts_dir / f"coreml-{p}").recipe["validation"] for p in ALL}
    assert v["fp32"]["weight_dtypes"].get("float16", 0) == 0 and v["fp32"]["weight_dtypes"]["float32"] > 0
    assert v["fp16"]["weight_dtypes"]["float16"] > 0 and v["fp16"]["weight_dtypes"].get("float32", 0) == 0
    assert v["int8-weight"]["int8_weight_tensors"] > 0
    assert v["int8"]["int8_weight_tensors"] > 0 and v["int8"]["activation_quantize_ops"] > 0
    assert all(x["inputs"] == ["image"] and x["outputs"] == ["logits"] for x in v.values())
    assert all(x["io"]["logits"]["dtype"] == "float32" and x["io"]["image"]["shape"] == [1, 1, 8, 8] for x in v.values())
    assert v["fp16"]["ops_by_dtype"]["conv:fp16"] > 0 and "conv:fp16" not in v["fp32"]["ops_by_dtype"]
    m = read_manifest(demo_coreml.artifacts_dir / "coreml-int8")
    assert m.recipe["quantization"] == "W8A8" and m.calibration is not None and m.calibration["samples"] == 256
    assert read_manifest(demo_coreml.artifacts_dir / "coreml-int8-weight").recipe["quantization"] == "weight-only"
    assert m.recipe["compute_units"] == "CPU_ONLY" and "predict" in m.recipe["why_not_linear_quantize_activations"]
    # the .mlpackage is a directory: every file inside it is checksummed
    assert len(read_manifest(demo_coreml.artifacts_dir / "coreml-fp32").files) >= 2


def test_validation_rejects_a_package_that_is_not_what_was_asked(demo_coreml) -> None:
    from types import SimpleNamespace

    from edgeship.config import InputSpec
    from edgeship.errors import ExportError
    from edgeship.exporters._coreml_validate import validate

    pkg = demo_coreml.artifacts_dir / "coreml-fp32" / "model.mlpackage"
    job = SimpleNamespace(model_name="digits_cnn", inputs=(InputSpec(name="image", shape=(1, 1, 8, 8)),), outputs=("logits",))
    assert validate(pkg, job, Precision.FP32)["weight_dtypes"]["float32"] > 0
    with pytest.raises(ExportError, match="coreml-fp16: validation failed: expected float16 weights"):
        validate(pkg, job, Precision.FP16)
    with pytest.raises(ExportError, match="expected int8 weights"):
        validate(pkg, job, Precision.INT8_WEIGHT)
    job = SimpleNamespace(model_name="digits_cnn", inputs=(InputSpec(name="image", shape=(1, 1, 9, 9)),), outputs=("logits",))
    with pytest.raises(ExportError, match=r"input 'image' is float32\[1, 1, 8, 8\], expected float32\[1, 1, 9, 9\]"):
        validate(pkg, job, Precision.FP32)


@pytest.mark.parametrize("name", ["tiny_encoder", "depthwise_cnn"])
def test_tiny_models_convert(name: str, tmp_path: Path) -> None:
    from edgeship.exporting.pipeline import export

    cfg = tiny_config(tmp_path, name)
    manifests = export(cfg, (Target.COREML,), (Precision.FP32, Precision.FP16, Precision.INT8))
    assert [m.precision for m in manifests] == ["fp32", "fp16", "int8"]
    assert manifests[2].recipe["validation"]["int8_weight_tensors"] > 0


@pytest.mark.parametrize("key,value,hint", [("deployment_target", "iOS61", "iOS16"), ("compute_units", "TPU", "CPU_AND_NE")])
def test_bad_coreml_target_key_is_exit_2(key: str, value: str, hint: str, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    cfg = cli_project(tmp_path, replace={'[targets.coreml]\n': f'[targets.coreml]\n{key} = "{value}"\n'})
    code = main(["--config", str(cfg), "export", "--target", "coreml", "--precision", "fp32"])
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2 and f"targets.coreml.{key}" in line and value in line and hint in line
    assert not (tmp_path / "build" / "artifacts" / "digits_cnn" / "coreml-fp32").exists()


def test_profile_on_linux_is_skipped_and_require_fails_the_gate(demo_coreml, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    shutil.copytree(demo_coreml.build / "artifacts", tmp_path / "build" / "artifacts")
    cfg = cli_project(tmp_path)
    code = main(["--config", str(cfg), "profile", "--target", "coreml"])
    out, err = capsys.readouterr()
    assert code == 0
    assert "SKIPPED" in out and "CoreML runs only on macOS" in (out + err)
    saved = json.loads((tmp_path / "build" / "results" / "local" / "coreml-fp16.json").read_text())
    assert saved["status"] == "skipped"
    budget = '\n[[budgets]]\ndevice = "local"\ntarget = "coreml"\nprecision = "fp16"\nlatency_ms = { p90 = 5 }\nrequire = true\n'
    cfg = cli_project(tmp_path)
    text = cfg.read_text()
    cfg.write_text(text[: text.index("[[budgets]]")] + budget)   # only the coreml budget
    code = main(["--config", str(cfg), "gate"])
    out = capsys.readouterr().out
    assert code == 1 and "required but SKIPPED" in out and "coreml-fp16" in out


@pytest.mark.skipif(sys.platform == "darwin", reason="CoreML runs on macOS: the artifact is measured there")
def test_integer_inputs_profile_as_skipped_on_linux(tmp_path: Path) -> None:
    """Token ids are int64 in the config and int32 in a CoreML artifact (CoreML has no int64).
    The bundle carries the dtypes the artifact takes, so the profile reaches the runtime check and
    is SKIPPED on Linux like every CoreML artifact (it used to abort the whole profile on the
    runner's dtype check, and the gate's re-run command with it), and the gate judges it."""
    from edgeship.exporting.pipeline import export
    from edgeship.gating.judge import gate
    from edgeship.measure.profile import profile

    budget = {"device": "local", "target": "coreml", "precision": "fp32", "latency_ms": {"p90": 5.0}}
    cfg = tiny_config(tmp_path, "tiny_encoder", targets={"coreml": {"precisions": ["fp32"]}}, budgets=[budget])
    export(cfg, (Target.COREML,), (Precision.FP32,))
    inputs = {t.name: t.dtype for t in read_manifest(cfg.artifacts_dir / "coreml-fp32").inputs}
    assert inputs == {"input_ids": "int32", "attention_mask": "int32"}
    assert {s.name: s.dtype for s in cfg.model.inputs} == {"input_ids": "int64", "attention_mask": "int64"}
    [result] = profile(cfg, "local")
    assert result["status"] == "skipped" and "macOS" in result["skip_reason"]
    [check] = gate(cfg, remeasure=lambda _d, _a: []).checks
    assert check.verdict.value == "SKIPPED" and check.check.artifact == "coreml-fp32"
    budget["require"] = True   # a SKIPPED run the budget demands is a FAIL, still not an abort
    cfg = tiny_config(tmp_path, "tiny_encoder", targets={"coreml": {"precisions": ["fp32"]}}, budgets=[budget])
    [check] = gate(cfg, remeasure=lambda _d, _a: []).checks
    assert check.verdict.value == "FAIL" and "required but SKIPPED" in check.detail
