"""CoreML for the families of issue 14: a transformers BERT embedder, GRU keyword spotters, LSTMs.

CoreML cannot execute on Linux (MLModel.predict needs macOS), so each cell is checked
structurally, on the saved package's MIL program: the ops that carry the family's computation,
the dtype of every weight, the I/O names, dtypes and shapes. W8A8 is also checked numerically
on the torch side (the calibrated fake-quant / PT2E module the package is converted from).
The support table in docs/export.md ("CoreML") states exactly these cells.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from edgeship.artifact.manifest import read_manifest
from edgeship.errors import ExportError
from edgeship.types import Precision, Target
from tests.conftest import tiny_config

FP32, FP16, INT8, INT8W = Precision.FP32, Precision.FP16, Precision.INT8, Precision.INT8_WEIGHT

# family -> (precisions that build, output shape, ops its computation must lower to)
WORKS = {
    "bert_embedder": ((FP32, FP16, INT8W, INT8), [1, 32], {"linear": 12, "layer_norm": 5, "softmax": 2, "gelu": 2,
                                                     "select": 1, "reduce_l2_norm": 1}),
    "gru_kws": ((FP32, FP16, INT8W, INT8), [1, 12], {"conv": 1, "while_loop": 1}),
    "gru_kws_2layer": ((FP32, FP16, INT8W, INT8), [1, 12], {"conv": 1, "while_loop": 2}),
    "lstm_tagger": ((FP32, FP16, INT8W, INT8), [1, 8], {"lstm": 2}),
    "lstm_tagger_1layer": ((FP32, FP16, INT8W, INT8), [1, 8], {"lstm": 1}),
}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every family exported once at every precision it supports: name -> artifacts dir."""
    import torch

    from edgeship.exporting.pipeline import export

    # one thread: these models are tiny, and a 2-thread GRU on a busy 2-core machine spins in
    # OpenMP (measured 0.65 s per call vs 9 ms) through calibration and the W8A8 simulation
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    out = {}
    try:
        for name, (precisions, _, _) in WORKS.items():
            cfg = tiny_config(tmp_path_factory.mktemp(name), name)
            export(cfg, (Target.COREML,), precisions)
            out[name] = cfg.artifacts_dir
    finally:
        torch.set_num_threads(threads)
    return out


def cells() -> list[tuple[str, Precision]]:
    return [(name, p) for name, (precisions, _, _) in WORKS.items() for p in precisions]


@pytest.mark.parametrize("name,precision", cells(), ids=[f"{n}-{p}" for n, p in cells()])
def test_cell_is_what_the_table_says(built: dict[str, Path], name: str, precision: Precision) -> None:
    art = built[name] / f"coreml-{precision}"
    m = read_manifest(art)
    v = m.recipe["validation"]
    _, shape, family_ops = WORKS[name]
    # the family's computation is in the program (a missing lowering would drop or replace it)
    for op, count in family_ops.items():
        assert v["ops"].get(op, 0) >= count, (op, v["ops"])
    # I/O: configured names, int64 inputs as int32 (recorded), real output shapes in the manifest
    assert [o.name for o in m.outputs] == ["embedding" if name == "bert_embedder" else "logits"]
    assert m.outputs[0].shape == shape and v["io"][m.outputs[0].name]["shape"] == shape
    if name == "bert_embedder":
        assert [(i.name, i.dtype) for i in m.inputs] == [("input_ids", "int32"), ("attention_mask", "int32")]
    # no ExecuTorch debug map inside the package, in the files table or on disk
    assert not any("executorch_debug_handle_mapping" in f for f in m.files)
    assert not list(art.rglob("executorch_debug_handle_mapping.json"))
    w, fw = v["weight_dtypes"], v["float_weight_ops"]
    if precision is FP32:
        assert w["float32"] > 0 and "float16" not in w and v["int8_weight_tensors"] == 0
    elif precision is FP16:
        fp32_ops = {k for k in fw if k.endswith(":float32")}
        if "lstm" in family_ops:   # MIL lstm takes fp16 weights only from iOS17 (the default target is iOS16)
            assert fp32_ops == {"lstm:float32"} and any("lstm kept float32" in n for n in m.notes)
            assert v["ops_by_dtype"]["linear:fp16"] == 1
        else:
            assert not fp32_ops and w["float16"] > 0 and "float32" not in w
            assert v["ops_by_dtype"]["linear:fp16"] >= 1
            if "while_loop" in family_ops:   # the GRU's gates inside the loop body are fp16 too
                assert fw["while_loop/linear:float16"] > 0
    elif precision is INT8W:
        assert v["int8_weight_tensors"] > 0 and v["weight_elements"]["int8"] > 0
        # everything over coremltools' 2048-element threshold is int8; the rest stays float (noted)
        assert m.recipe["weight_threshold"] == 2048 and v["largest_float_weight"] <= 2048
        assert any("int8 holds" in n for n in m.notes) == (v["int8_weight_fraction"] < 1.0)
    else:
        assert m.recipe["quantization"] == "W8A8" and v["activation_quantize_ops"] > 0 and v["int8_weight_tensors"] > 0
        assert m.recipe["deployment_target_effective"] == "iOS17"
        sim = m.recipe["torch_simulation"]
        assert sim["samples"] == 16 and sim["cosine_min"] >= 0.90
        if name == "bert_embedder":   # torch.fx cannot trace BertModel: torch.export + PT2E, recorded
            assert "torch.fx" in m.recipe["why_pt2e"] and "PT2E" in m.recipe["quantizer"]
            assert m.calibration is not None and m.calibration["method"] == "minmax (torchao PT2E observers)"
            assert v["int8_weight_tensors"] == 12 and v["ops_by_dtype"]["linear:fp32"] == 12   # every linear
            assert sim["cosine_min"] >= 0.999
            return
        assert "why_pt2e" not in m.recipe and "LinearQuantizer" in m.recipe["quantizer"]
        # the recurrent cell stays float in W8A8, and the manifest says so with its share
        cell = "lstm:float32" if "lstm" in family_ops else "while_loop/linear:float32"
        assert fw[cell] > 0 and v["int8_weight_fraction"] < 0.5
        assert any("float weights remain in" in n and cell.split(":")[0] in n for n in m.notes)


def test_int8_weight_validation_follows_the_threshold(built: dict[str, Path]) -> None:
    """The validator accepts what linear_quantize_weights is documented to produce, no more."""
    from types import SimpleNamespace

    from edgeship.exporters._coreml_validate import validate
    from tests.models import TINY_MODELS

    spec = TINY_MODELS["bert_embedder"]
    job = SimpleNamespace(model_name="bert_embedder", inputs=spec.inputs, outputs=spec.outputs)
    fp16 = built["bert_embedder"] / "coreml-fp16" / "model.mlpackage"
    # the fp16 package has float weights over 2048 elements (the 128x32 word embedding): not int8-weight
    with pytest.raises(ExportError, match=r"coreml-int8-weight: validation failed: expected int8 weights .* over 2048 "
                                          r"elements, found a float one of 4096"):
        validate(fp16, job, INT8W)
    # with no weight over the threshold, no int8 weight is the documented result, not a failure
    info = validate(fp16, job, INT8W, weight_threshold=4096)
    assert info["int8_weight_tensors"] == 0 and info["largest_float_weight"] == 4096
    # and the exporter's note says that nothing was quantized
    from edgeship.exporters.coreml import CoreMLExporter

    notes = CoreMLExporter._notes({"deployment_target": "iOS16", "weight_threshold": 4096, "validation": info}, INT8W)
    assert any("nothing was quantized" in n and "largest 4096" in n for n in notes)


def test_a_fp32_lstm_in_an_fp16_package_needs_the_pre_ios17_exemption(built: dict[str, Path],
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from types import SimpleNamespace

    import edgeship.exporters._coreml_validate as cv
    from tests.models import TINY_MODELS

    spec = TINY_MODELS["lstm_tagger"]
    job = SimpleNamespace(model_name="lstm_tagger", inputs=spec.inputs, outputs=spec.outputs)
    pkg = built["lstm_tagger"] / "coreml-fp16" / "model.mlpackage"
    assert cv.validate(pkg, job, FP16, output_shapes={"logits": [1, 8]})["spec_version"] < cv.IOS17_SPEC
    with pytest.raises(ExportError, match=r"output 'logits' has shape \[1, 8\], the PyTorch model gives \[1, 9\]"):
        cv.validate(pkg, job, FP16, output_shapes={"logits": [1, 9]})
    monkeypatch.setattr(cv, "IOS17_SPEC", 0)   # as if it targeted iOS17: fp32 lstm weights then fail
    with pytest.raises(ExportError, match=r"expected float16 weights, .*\(float32 in lstm\)"):
        cv.validate(pkg, job, FP16)


def test_ios17_makes_the_lstm_fp16(tmp_path: Path) -> None:
    """What the fp16 note promises: at iOS17 MIL's lstm takes fp16 weights and nothing stays fp32."""
    import tomllib

    from edgeship.exporting.pipeline import export
    from tests.conftest import ROOT

    targets = tomllib.loads((ROOT / "edgeship.toml").read_text())["targets"]
    targets["coreml"] = {**targets.get("coreml", {}), "deployment_target": "iOS17"}
    cfg = tiny_config(tmp_path, "lstm_tagger_1layer", targets=targets)
    m = export(cfg, (Target.COREML,), (FP16,))[0]
    v = m.recipe["validation"]
    assert v["float_weight_ops"]["lstm:float16"] > 0 and "float32" not in v["weight_dtypes"]
    assert v["ops_by_dtype"]["lstm:fp16"] == 1 and not any("kept float32" in n for n in m.notes)
