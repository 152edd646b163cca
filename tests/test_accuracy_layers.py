"""Per-layer INT8 error and keep-float for TFLite and CoreML (issue 15, the backends' side).

The model is built so that one layer is the culprit: ``fc1`` reads an input with three
channels 40x larger than the rest, so per-tensor int8 activations of that input leave the
other 29 channels a few levels each. Its weights for those channels are scaled down, so in
float the outliers contribute like any other channel. Keeping ``fc1`` float removes the only
quantization of that input; keeping ``fc2`` or ``head`` float does not help.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from edgeship.accuracy.layers import worst_first
from edgeship.artifact.manifest import read_manifest
from edgeship.calibration import Sample
from edgeship.config import InputSpec, QuantizationConfig, TargetConfig
from edgeship.errors import UsageError
from edgeship.exporters.base import ExportJob, get_exporter
from edgeship.types import Precision

OUTLIER = 40.0
CULPRIT = "fc1"


class InputOutlierNet(nn.Module):
    """32 features -> 64 -> 64 -> 10 logits; features 0-2 arrive 40x larger than the rest."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(32, 64)
        self.fc2 = nn.Linear(64, 64)
        self.head = nn.Linear(64, 10)
        with torch.no_grad():
            self.fc1.weight[:, :3] /= OUTLIER

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.fc2(torch.relu(self.fc1(x)))))


def _feed(seed: int) -> dict[str, np.ndarray]:
    x = np.random.default_rng(seed).standard_normal((1, 32)).astype(np.float32)
    x[:, :3] *= OUTLIER
    return {"x": x}


CALIBRATION = [Sample(_feed(i)) for i in range(16)]
HELDOUT = [Sample(_feed(1000 + i)) for i in range(8)]


def _job(keep: tuple[str, ...] = ()) -> ExportJob:
    torch.manual_seed(0)
    model = InputOutlierNet().eval()
    return ExportJob(
        model=model, model_name="outlier", inputs=(InputSpec(name="x", shape=(1, 32)),), outputs=("logits",),
        example_inputs=CALIBRATION[0].inputs, quantization=QuantizationConfig(), target_config=TargetConfig(),
        calibration=lambda: CALIBRATION, calibration_ref="tests/test_accuracy_layers.py", keep_float=keep,
    )


def _build(tmp: Path, target: str) -> dict[str, Any]:
    ex = get_exporter(target)
    plain, kept = tmp / f"{target}-int8", tmp / f"{target}-int8-kept"
    ex.export(_job(), Precision.INT8, plain)
    report = ex.layer_report(_job(), Precision.INT8, plain, HELDOUT)
    ex.export(_job((CULPRIT,)), Precision.INT8, kept)
    return {"plain": plain, "kept": kept, "report": report}


@pytest.fixture(scope="module")
def tflite(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return _build(tmp_path_factory.mktemp("tflite"), "tflite")


@pytest.fixture(scope="module")
def coreml(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return _build(tmp_path_factory.mktemp("coreml"), "coreml")


def _assert_culprit_first(report: list[Any], tool_word: str) -> None:
    assert {e.layer for e in report} == {"fc1", "fc2", "head"}
    ranked = worst_first(report)
    first, rest = ranked[0], ranked[1:]
    assert first.layer == CULPRIT and first.module == CULPRIT, [(e.layer, e.gain_if_float, e.sqnr_db) for e in ranked]
    assert first.params == 32 * 64 + 64
    # keeping the culprit float removes most of the output error; the others barely matter
    assert first.gain_if_float is not None and first.gain_if_float > 0.8, first
    assert all(e.gain_if_float is not None and e.gain_if_float < 0.2 for e in rest), rest
    assert all(0.0 < e.sqnr_db < 40.0 for e in report), report   # all see the culprit's error downstream
    assert all(tool_word in e.tool for e in report)


# -- TFLite ------------------------------------------------------------------------------------
def test_tflite_report_ranks_the_culprit_first(tflite: dict[str, Any]) -> None:
    _assert_culprit_first(tflite["report"], "PT2E")


def test_tflite_report_of_a_kept_build_covers_the_quantized_layers_only(tflite: dict[str, Any]) -> None:
    """The report re-quantizes with the artifact's own recipe.kept_float: fc1 is no layer of it,
    and with the culprit float the layers after it lose little (about 39 dB, 13 dB before)."""
    report = get_exporter("tflite").layer_report(_job(), Precision.INT8, tflite["kept"], HELDOUT)
    assert {e.layer for e in report} == {"fc2", "head"}
    assert all(e.sqnr_db > 30.0 and e.gain_if_float is not None for e in report), report


def _fully_connected(path: Path) -> list[tuple[str, str, tuple[int, ...], str]]:
    """(input dtype, weight dtype, weight shape, weight tensor name) of every FULLY_CONNECTED."""
    from ai_edge_litert import schema_py_generated as s

    from edgeship.exporters import _tflite_fb as fb

    types = {v: k for k, v in vars(s.TensorType).items() if not k.startswith("_")}
    model = fb.read(path)
    sg = model.subgraphs[0]
    out = []
    for op in sg.operators:
        code = model.operatorCodes[op.opcodeIndex]
        if max(code.builtinCode, code.deprecatedBuiltinCode) != s.BuiltinOperator.FULLY_CONNECTED:
            continue
        x, w = sg.tensors[op.inputs[0]], sg.tensors[op.inputs[1]]
        out.append((types[x.type], types[w.type], tuple(int(d) for d in w.shape), (w.name or b"").decode()))
    return out


def test_tflite_keep_float_leaves_exactly_the_culprit_float(tflite: dict[str, Any]) -> None:
    plain, kept = read_manifest(tflite["plain"]), read_manifest(tflite["kept"])
    assert plain.recipe["kept_float"] == [] and kept.recipe["kept_float"] == [CULPRIT]
    assert plain.recipe["integer_graph"]["float_ops"] == {}
    assert kept.recipe["integer_graph"]["float_ops"] == {"FULLY_CONNECTED": 1}
    assert any("kept float on request: fc1" in n for n in kept.notes), kept.notes
    fcs = _fully_connected(tflite["kept"] / "model.tflite")
    floats = [fc for fc in fcs if fc[:2] == ("FLOAT32", "FLOAT32")]
    assert len(fcs) == 3 and len(floats) == 1, fcs
    assert floats[0][2] == (64, 32) and "fc1" in floats[0][3], floats   # fc1's weight, named after it
    assert all(fc[:2] == ("INT8", "INT8") for fc in fcs if fc not in floats), fcs
    assert all(fc[:2] == ("INT8", "INT8") for fc in _fully_connected(tflite["plain"] / "model.tflite"))


def test_tflite_keep_float_improves_fidelity_on_litert(tflite: dict[str, Any]) -> None:
    from edgeship.artifact.inprocess import run_artifact
    from edgeship.artifact.selection import ArtifactRef
    from edgeship.metrics import fidelity
    from edgeship.model.reference import run_reference

    job = _job()
    feeds = [s.inputs for s in HELDOUT]
    ref = [run_reference(job.model, f, job.inputs) for f in feeds]
    fid: dict[str, dict[str, Any]] = {k: fidelity(ref, run_artifact(ArtifactRef(tflite[k], read_manifest(tflite[k])), feeds))
           for k in ("plain", "kept")}
    # the all-INT8 build misses min_cosine = 0.99; keeping the culprit float meets it
    assert fid["plain"]["cosine_min"] < 0.99, fid
    assert fid["kept"]["cosine_min"] > 0.999, fid
    assert fid["kept"]["snr_db"] > fid["plain"]["snr_db"] + 20, fid


def test_tflite_keep_float_rejects_an_unknown_layer(tmp_path: Path) -> None:
    # relu is an op of the graph but not a layer the quantizer quantizes: keeping it would do nothing
    for bad in ("fc9", "relu"):
        with pytest.raises(UsageError, match=rf"keep_float names no quantized layer of the model: {bad} .*fc1, fc2, head"):
            get_exporter("tflite").export(_job((bad,)), Precision.INT8, tmp_path / "a")
    assert not (tmp_path / "a").exists()


def test_layer_report_needs_the_int8_artifact(tflite: dict[str, Any]) -> None:
    with pytest.raises(UsageError, match="no per-layer error report for precision 'fp16'"):
        get_exporter("tflite").layer_report(_job(), Precision.FP16, tflite["plain"], HELDOUT)
    with pytest.raises(UsageError, match="needs a coreml int8 artifact, not tflite-int8"):
        get_exporter("coreml").layer_report(_job(), Precision.INT8, tflite["plain"], HELDOUT)


# -- CoreML ------------------------------------------------------------------------------------
def test_coreml_report_ranks_the_culprit_first(coreml: dict[str, Any]) -> None:
    _assert_culprit_first(coreml["report"], "needs macOS")


def _linear_weights(package: Path) -> dict[str, str]:
    """MIL linear op -> the type of the op producing its weight (constexpr_* = int8 weights)."""
    import coremltools as ct

    spec = ct.utils.load_spec(str(package))
    out = {}
    for fn in spec.mlProgram.functions.values():
        for block in fn.block_specializations.values():
            producer = {o.name: op.type for op in block.operations for o in op.outputs}
            for op in block.operations:
                if op.type == "linear":
                    weight = op.inputs["weight"].arguments[0].name
                    x = op.inputs["x"].arguments[0].name
                    out[op.outputs[0].name] = f"{producer.get(weight, 'const')}/{producer.get(x, 'input')}"
    return out


def test_coreml_keep_float_leaves_exactly_the_culprit_float(coreml: dict[str, Any]) -> None:
    plain, kept = read_manifest(coreml["plain"]), read_manifest(coreml["kept"])
    assert kept.recipe["kept_float"] == [CULPRIT]
    assert kept.recipe["op_selector"] == {"module_name_configs": {CULPRIT: None}}
    assert any("kept float on request: fc1 (ML program ops computing in float: fc1" in n for n in kept.notes), kept.notes
    assert plain.recipe["op_selector"] == {} and plain.recipe["float_mil_ops"] == []
    weights = _linear_weights(coreml["kept"] / "model.mlpackage")
    floats = {op: w for op, w in weights.items() if not w.startswith("constexpr_")}
    assert len(weights) == 3 and list(floats) == kept.recipe["float_mil_ops"], weights
    (op, producers), = floats.items()
    assert op.startswith("fc1") and producers == "const/input", weights   # float weight, unquantized input
    assert all(w == "constexpr_affine_dequantize/dequantize" for o, w in weights.items() if o != op), weights
    assert all(w == "constexpr_affine_dequantize/dequantize"
               for w in _linear_weights(coreml["plain"] / "model.mlpackage").values())


def test_coreml_keep_float_rejects_an_unknown_module(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"keep_float names no module with weights: relu .*fc1"):
        get_exporter("coreml").export(_job(("relu",)), Precision.INT8, tmp_path / "a")
