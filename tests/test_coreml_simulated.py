"""CoreML INT8 (W8A8) numbers from the torch simulation: calibrated right, judged, labelled (issue 25).

CoreML cannot execute on Linux, but its W8A8 is quantized in torch before conversion, and the
calibrated fake-quant module's fidelity is recorded in the manifest (``torch_simulation``).
That number is evidence: eval turns it into an entry marked ``evidence: "simulated"`` bound
to the artifact digest, the gate judges it against min_cosine (it can FAIL), and a verdict
from it says "simulated" in every report. coremltools' export runs on Linux: no test double.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from edgeship.artifact.manifest import read_manifest
from edgeship.errors import ExportError
from edgeship.types import Precision, Target
from tests.conftest import tiny_config

BN_CNNS = ("depthwise_cnn", "mobile_v3_cnn")   # MobileNetV2- and V3-style nets with BatchNorm


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Each BatchNorm CNN exported to coreml int8 and fp16 and evaluated here: name -> config."""
    import torch

    from edgeship.exporting.pipeline import export
    from edgeship.measure.evaluate import evaluate

    threads = torch.get_num_threads()
    torch.set_num_threads(1)   # tiny models on a shared machine: one thread avoids OpenMP spinning
    out = {}
    try:
        for name in BN_CNNS:
            cfg = tiny_config(tmp_path_factory.mktemp(name), name)
            export(cfg, (Target.COREML,), (Precision.INT8, Precision.FP16))
            evaluate(cfg, (Target.COREML,))
            out[name] = cfg
    finally:
        torch.set_num_threads(threads)
    return out


def _sim(cfg: Any) -> dict[str, Any]:
    return read_manifest(cfg.artifacts_dir / "coreml-int8").recipe["torch_simulation"]


@pytest.mark.parametrize("name", BN_CNNS)
def test_batchnorm_cnn_w8a8_is_calibrated_in_eval_mode(built: dict[str, Any], name: str) -> None:
    """In train mode (what LinearQuantizer.prepare leaves) BatchNorm normalized each calibration
    batch by its own statistics: cosine 0.16 (V2-style) and 0.59 (V3-style) instead of 0.9999."""
    sim = _sim(built[name])
    assert sim["samples"] == 16 and sim["cosine_min"] >= 0.99, sim
    m = read_manifest(built[name].artifacts_dir / "coreml-int8")
    assert m.recipe["quantization"] == "W8A8" and m.recipe["validation"]["activation_quantize_ops"] > 0


def test_calibration_leaves_the_models_mode_and_statistics_as_they_were() -> None:
    """A model handed over in train mode is observed in eval mode and left in train mode, its
    BatchNorm statistics untouched."""
    import torch

    from edgeship.calibration import Sample
    from edgeship.config import QuantizationConfig, TargetConfig
    from edgeship.exporters.base import ExportJob
    from edgeship.exporters.coreml import CoreMLExporter
    from tests.models import TINY_MODELS, cnn_batches, depthwise_cnn

    model = depthwise_cnn().train()
    stats = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
    samples = [Sample({"image": b["image"][i:i + 1]}) for b in cnn_batches() for i in range(2)]
    job = ExportJob(model=model, model_name="depthwise_cnn", inputs=TINY_MODELS["depthwise_cnn"].inputs,
                    outputs=("logits",), example_inputs=samples[0].inputs, quantization=QuantizationConfig(),
                    target_config=TargetConfig(), calibration=lambda: samples, calibration_ref="test")
    final = CoreMLExporter.w8a8_calibrated(job, samples)
    assert all(m.training for m in model.modules())
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in stats.items())
    model.eval()
    x = torch.from_numpy(samples[3].inputs["image"])
    with torch.no_grad():
        cos = torch.nn.functional.cosine_similarity(final(x), model(x)).item()
    assert cos >= 0.99


def test_pt2e_calibration_exports_in_eval_mode_and_restores_the_mode() -> None:
    """The torch.export + PT2E path (models torch.fx cannot trace) records the mode it traces in:
    a model handed over in train mode would keep dropping activations in the simulation."""
    import torch
    from torch import nn

    from edgeship.exporters import _coreml_pt2e

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Dropout(0.5), nn.Linear(32, 4)).train()
    feeds = [(torch.randn(4, 16),) for _ in range(8)]
    final = _coreml_pt2e.calibrate(model, feeds[0], feeds)
    assert all(m.training for m in model.modules())
    model.eval()
    with torch.no_grad():
        cos = torch.nn.functional.cosine_similarity(final(*feeds[3]), model(*feeds[3])).min().item()
    assert cos >= 0.99


def test_a_simulation_under_the_int8_bound_fails_the_export(tmp_path: Path) -> None:
    """outlier_chain: outliers in every hidden tensor, so per-tensor uint8 activations break it;
    the export fails like an ONNX/TFLite INT8 under the bound, and nothing is written."""
    from edgeship.errors import EdgeshipError
    from edgeship.exporters.base import MIN_EXPORT_COSINE
    from edgeship.exporting.pipeline import export

    cfg = tiny_config(tmp_path, "outlier_chain")
    with pytest.raises(EdgeshipError, match=r"coreml-int8: the W8A8 simulation in torch \(.+\) does not match the PyTorch "
                                            rf"reference \(min cosine 0\.\d+ < {MIN_EXPORT_COSINE[Precision.INT8]} "
                                            r"on 16 calibration samples\); the artifact was not written"):
        export(cfg, (Target.COREML,), (Precision.INT8,))
    assert not (cfg.artifacts_dir / "coreml-int8").exists()


def test_check_simulation_refuses_a_missing_number() -> None:
    from types import SimpleNamespace

    from edgeship.exporters.coreml import _check_simulation

    job = SimpleNamespace(model_name="m")
    _check_simulation(job, {"cosine_min": 0.95, "samples": 16})   # type: ignore[arg-type]
    for bad in (0.5, float("nan"), None):
        with pytest.raises(ExportError, match="W8A8 simulation"):
            _check_simulation(job, {"cosine_min": bad, "samples": 16})   # type: ignore[arg-type]


def test_eval_records_the_simulation_as_simulated_evidence(built: dict[str, Any]) -> None:
    from edgeship.artifact.eval_file import eval_path
    from edgeship.artifact.manifest import artifact_digest
    from edgeship.measure.evaluate import format_table

    cfg = built["depthwise_cnn"]
    report = json.loads(eval_path(cfg).read_text())
    e, fp16 = report["entries"]["local/coreml-int8"], report["entries"]["local/coreml-fp16"]
    sim = _sim(cfg)
    assert e["status"] == "ok" and e["evidence"] == "simulated" and "macOS" in e["not_run"]
    assert e["cosine_mean"] == sim["cosine_mean"] and e["cosine_min"] == sim["cosine_min"] and e["samples"] == 16
    assert e["artifact_digest"] == artifact_digest(cfg.artifacts_dir / "coreml-int8")
    assert e["accuracy"] is None and e["retrieval_agreement"] is None
    # nothing simulated at fp16: no number, SKIPPED as before
    assert fp16["status"] == "skipped" and fp16["cosine_mean"] is None and "macOS" in fp16["skip_reason"]
    table = format_table({**report, "updated": ["local/coreml-int8"]}, width=400)
    assert "simulated" in table


def _copy(name: str, cfg: Any, tmp: Path, budgets: list[dict[str, Any]]) -> Any:
    """A config of model ``name`` with ``budgets`` over a copy of ``cfg``'s build dir."""
    import shutil

    shutil.copytree(cfg.build, tmp / "build")
    return tiny_config(tmp, name, budgets=budgets)


def _gate(name: str, cfg: Any, tmp: Path, budgets: list[dict[str, Any]]) -> Any:
    from edgeship.gating.judge import gate

    return gate(_copy(name, cfg, tmp, budgets), remeasure=lambda _d, _a: [])


def _reports(result: Any, tmp: Path) -> dict[str, str]:
    from edgeship.reports import write_reports

    paths = write_reports(result.report, tmp / "out")
    return {p.name: p.read_text() for p in paths}


def test_simulated_fidelity_is_judged_and_can_fail(built: dict[str, Any], tmp_path: Path) -> None:
    """A min_cosine above what the simulation gives is a FAIL, labelled simulated in every report."""
    from edgeship.reports.terminal import render_terminal

    cfg = built["mobile_v3_cnn"]
    above = (1.0 + _sim(cfg)["cosine_mean"]) / 2    # between the simulated cosine and 1: cannot be met
    res = _gate("mobile_v3_cnn", cfg, tmp_path, [{"device": "*", "target": "coreml", "precision": "int8", "min_cosine": above}])
    (c,) = res.checks
    assert res.exit_code == 1 and c.verdict.value == "FAIL" and c.evidence.value == "simulated"
    assert c.value == _sim(cfg)["cosine_mean"] and c.detail.startswith("simulated (")
    term = render_terminal(res.report, width=400)
    assert "FAIL (simulated)" in term
    out = _reports(res, tmp_path)
    assert "FAIL (simulated)" in out["report.md"] and "FAIL (simulated)" in out["report.html"]
    assert 'message="FAIL (simulated): simulated (' in out["junit.xml"]
    (jc,) = json.loads(out["report.json"])["checks"]
    assert jc["verdict"] == "FAIL" and jc["evidence"] == "simulated"


def test_simulated_pass_is_labelled_in_every_report(built: dict[str, Any], tmp_path: Path) -> None:
    from edgeship.reports.terminal import render_terminal

    cfg = built["depthwise_cnn"]
    res = _gate("depthwise_cnn", cfg, tmp_path, [
        {"device": "*", "target": "coreml", "precision": "int8", "min_cosine": 0.99, "max_accuracy_drop": 0.05},
        {"device": "*", "target": "coreml", "precision": "fp16", "min_cosine": 0.99},
    ])
    by = {(c.check.artifact, c.check.metric): c for c in res.checks}
    ok, acc, fp16 = by[("coreml-int8", "cosine_mean")], by[("coreml-int8", "accuracy_drop")], by[("coreml-fp16", "cosine_mean")]
    assert ok.verdict.value == "PASS" and ok.evidence.value == "simulated" and "simulated" in ok.detail
    # no number: the simulation has no accuracy, nothing ran at fp16; only these are SKIPPED
    assert acc.verdict.value == "SKIPPED" and acc.evidence.value == "none" and "cosine only" in acc.detail
    assert fp16.verdict.value == "SKIPPED" and "macOS" in fp16.detail
    assert res.exit_code == 0
    term = render_terminal(res.report, width=400)                 # PASS rows are hidden by default ...
    assert "passed on simulated evidence: local/coreml-int8 cosine_mean" in term.splitlines()[-1]   # ... named here
    assert "PASS (simulated)" in render_terminal(res.report, width=400, all_rows=True)
    out = _reports(res, tmp_path)
    checks = {(c["artifact"], c["metric"]): c for c in json.loads(out["report.json"])["checks"]}
    assert checks[("coreml-int8", "cosine_mean")]["evidence"] == "simulated"
    assert checks[("coreml-int8", "cosine_mean")]["verdict"] == "PASS"
    assert "PASS (simulated)" in out["report.md"] and "Passed on simulated evidence: local/coreml-int8" in out["report.md"]
    assert "PASS (simulated)" in out["report.html"] and "passed on simulated evidence" in out["report.html"]
    assert 'PASS (simulated): simulated (' in out["junit.xml"]


def test_a_tampered_simulation_is_stale_evidence(built: dict[str, Any], tmp_path: Path) -> None:
    """The numbers live in the manifest: editing them changes the artifact digest, and the
    entry measured before no longer stands for the artifact (FAIL naming eval, never PASS)."""
    from edgeship.gating.judge import gate

    copy = _copy("depthwise_cnn", built["depthwise_cnn"], tmp_path,
                 [{"device": "*", "target": "coreml", "precision": "int8", "min_cosine": 0.5}])
    path = copy.artifacts_dir / "coreml-int8" / "manifest.json"
    data = json.loads(path.read_text())
    data["recipe"]["torch_simulation"]["cosine_mean"] = 1.0
    path.write_text(json.dumps(data, indent=2))
    (c,) = gate(copy, remeasure=lambda _d, _a: []).checks
    assert c.verdict.value == "FAIL" and "stale" in c.detail and c.rerun.startswith("edgeship eval")
