"""Accuracy-aware INT8: revert layers to float, worst first, until the budget is met.

Called by the export pipeline right after an INT8 artifact is built. When an accuracy budget
applies (edgeship/accuracy/budget.py) and ``[quantization] accuracy_aware`` is on (default),
the artifact is measured on the evaluation set (labels give the drop; cosine always) on the
CPU class it is built for. If it misses:

1. rank the quantized layers (``Exporter.layer_report`` then ``worst_first``: measured gain if
   float first, then SQNR);
2. re-export with the first ``fallback_step`` layers of the ranking kept float
   (``ExportJob.keep_float``), measure, add the next ones, ... ;
3. stop when the budget is met, or before more than ``max_float_fraction`` of the quantized
   layers would be float: then the artifact is removed (not shipped), the steps are printed as a
   table, and ``AccuracyFallbackFailed`` (exit 1) is raised.

Every outcome is recorded in the manifest's ``recipe["accuracy_aware"]``. A class this host can
neither run nor emulate is not searched (recorded): a host kernel quirk must never trigger a
fallback the device does not need, nor hide one it does.
"""

from __future__ import annotations

import dataclasses
import math
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgeship.accuracy.budget import AccuracyBudget, applicable_budget, describe_score
from edgeship.accuracy.layers import worst_first
from edgeship.artifact.manifest import Manifest
from edgeship.config import Config
from edgeship.errors import AccuracyFallbackFailed, UsageError
from edgeship.model.reference import reference_outputs
from edgeship.types import Precision

LAYER_SAMPLES = 32      # samples the per-layer report runs on (the ranking, not the verdict)
SEARCHED = (Precision.INT8, Precision.INT8_DYNAMIC)


class NotMeasurable(Exception):
    """The artifact cannot be run on a CPU of its class here."""


def run_on_class(artifact_dir: Path, manifest: Manifest, feeds: Sequence[dict[str, np.ndarray]]) -> tuple[list[list[np.ndarray]], str]:
    """The artifact's outputs computed by a CPU of the class it is built for; (outputs, how)."""
    bf = manifest.built_for or {}
    if manifest.runtime == "onnxruntime" and bf.get("cpu_class"):
        from edgeship.exporters._onnx_layers import NotMeasurable as OnnxNotMeasurable
        from edgeship.exporters._onnx_layers import outputs_on_class

        try:
            outs, how = outputs_on_class(bf["cpu_class"], {"m": artifact_dir / manifest.model_file}, feeds)
        except OnnxNotMeasurable as exc:
            raise NotMeasurable(str(exc)) from None
        return outs["m"], how
    from edgeship.artifact.inprocess import run_artifact
    from edgeship.artifact.selection import ArtifactRef
    from edgeship.runtimes.base import RuntimeUnavailable

    try:
        return run_artifact(ArtifactRef(artifact_dir, manifest), list(feeds)), "in-process on this host"
    except RuntimeUnavailable as exc:
        raise NotMeasurable(str(exc)) from None


class _Validator:
    """Reference outputs and labels of the validation set; scores an artifact on its class."""

    def __init__(self, cfg: Config, job: Any) -> None:
        from edgeship.calibration import evaluation_samples
        from edgeship.metrics import accuracy

        self.samples = evaluation_samples(cfg)
        self.source = "data.evaluation" if cfg.data.evaluation else "data.calibration"
        self.feeds = [dict(s.inputs) for s in self.samples]
        labels = [s.label for s in self.samples if s.label is not None]
        self.labels = labels if labels and len(labels) == len(self.samples) else None
        self.ref = reference_outputs(job, self.feeds)
        self.ref_acc = accuracy(self.ref, self.labels) if self.labels else None

    def score(self, artifact_dir: Path, m: Manifest) -> dict[str, Any]:
        from edgeship.metrics import accuracy, fidelity

        outs, how = run_on_class(artifact_dir, m, self.feeds)
        fid = fidelity(self.ref, outs)
        acc = accuracy(outs, self.labels) if self.labels else None
        drop = (self.ref_acc - acc) if acc is not None and self.ref_acc is not None else None
        return {"cosine_mean": fid["cosine_mean"], "cosine_min": fid["cosine_min"], "accuracy": acc,
                "accuracy_drop": drop, "measured": how}


def accuracy_aware(cfg: Config, exporter: Any, job: Any, precision: Precision, out_dir: Path,
                   manifest: Manifest, say: Callable[[str], None]) -> Manifest:
    """Run the search for the INT8 artifact just written to ``out_dir``; return its final manifest."""
    precision = Precision(precision)
    if precision not in SEARCHED or not cfg.quantization.accuracy_aware:
        return manifest
    devices = job.cpu_target.devices if job.cpu_target is not None else ("local",)
    budget = applicable_budget(cfg, manifest.target, manifest.precision, devices)
    if budget is None:
        return manifest
    started = time.perf_counter()
    val = _Validator(cfg, job)
    rec: dict[str, Any] = {"budget": budget.to_json(), "validation": {
        "source": val.source, "samples": len(val.feeds), "labels": val.labels is not None}}
    if budget.max_drop is not None and val.labels is None:
        rec["validation"]["note"] = f"max drop not checked at export: {val.source} has no labels; cosine only"
    try:
        before = val.score(out_dir, manifest)
    except NotMeasurable as exc:
        cls = (manifest.built_for or {}).get("cpu_class")
        rec.update(status="not searched", why=f"cannot run the artifact on its CPU class {cls} here: {exc}; "
                   "judge it on a device of that class (edgeship eval --device)")
        say(f"  accuracy-aware INT8: not searched ({rec['why']})")
        return _record(out_dir, manifest, rec)
    rec["before"] = before
    if budget.met(before):
        rec.update(status="met", reverted=[], steps=[], final=before)
        return _record(out_dir, manifest, rec)
    try:
        errors = exporter.layer_report(job, precision, out_dir, val.samples[:LAYER_SAMPLES])
    except UsageError as exc:
        rec.update(status="not searched", why=f"no per-layer report: {exc}")
        say(f"  accuracy-aware INT8: {describe_score(before, budget)} misses {budget.describe()}; not searched ({exc})")
        return _record(out_dir, manifest, rec)
    from edgeship.accuracy.report import RANKING_METRIC, layer_record, store_layers
    from edgeship.artifact.eval_file import eval_path

    store_layers(cfg, out_dir.name, layer_record(out_dir, errors, min(len(val.samples), LAYER_SAMPLES),
                                                 "all-INT8, before the accuracy-aware fallback"))
    ranking = worst_first(errors)
    n = len(ranking)
    limit = min(n, math.floor(cfg.quantization.max_float_fraction * n + 1e-9))
    rec.update(ranking_metric=RANKING_METRIC, quantized_layers=n, max_float_fraction=cfg.quantization.max_float_fraction,
               max_float_layers=limit, ranking=[e.layer for e in ranking])
    steps: list[dict[str, Any]] = []
    k, final, met = 0, manifest, False
    while k < limit and not met:
        k = min(k + cfg.quantization.fallback_step, limit)
        kept = tuple(e.layer for e in ranking[:k])
        final = exporter.export(dataclasses.replace(job, keep_float=kept), precision, out_dir)
        score = val.score(out_dir, final)
        met = budget.met(score)
        steps.append({"kept_float": list(kept), **score, "met": met})
    rec.update(steps=steps, seconds=round(time.perf_counter() - started, 2))
    by_layer = {e.layer: e for e in ranking}
    if met:
        kept = steps[-1]["kept_float"]
        rec.update(status="met by fallback", final=steps[-1], reverted=[by_layer[x].to_json() for x in kept])
        say(f"  {len(kept)} of {n} layers kept in float to meet {budget.describe()} "
            f"(was {describe_score(before, budget)}, now {describe_score(steps[-1], budget)})")
        return _record(out_dir, final, rec)
    for line in table(before, steps, budget).splitlines():
        say(line)
    _unship(out_dir)
    why = (f"the budget needs more than {limit} of {n} layers in float ([quantization] max_float_fraction = "
           f"{cfg.quantization.max_float_fraction:g})" if limit else
           f"[quantization] max_float_fraction = {cfg.quantization.max_float_fraction:g} allows no layer of {n} in float")
    raise AccuracyFallbackFailed(
        f"{job.model_name}: {out_dir.name}: {describe_score(before, budget)} misses {budget.describe()} and {why}; "
        f"the artifact was removed. The all-INT8 build's per-layer error is in {eval_path(cfg)} "
        f"(layers.{out_dir.name}); raise max_float_fraction, relax the budget, or try another calibration method")


def _unship(out_dir: Path) -> None:
    """Remove the artifact: its name (a symlink to a version directory, fsutil) and the version."""
    from edgeship.artifact.atomic import sweep

    if out_dir.is_symlink():
        out_dir.unlink()
    elif out_dir.is_dir():
        shutil.rmtree(out_dir)
    sweep(out_dir.parent)


def _record(out_dir: Path, m: Manifest, rec: dict[str, Any]) -> Manifest:
    m = dataclasses.replace(m, recipe={**m.recipe, "accuracy_aware": rec})
    m.write(out_dir)
    return m


def table(before: dict[str, Any], steps: list[dict[str, Any]], budget: AccuracyBudget) -> str:
    """What was tried: one row per build (the all-INT8 one first)."""
    from edgeship.ui.table import render

    def row(label: str, kept: list[str], added: list[str], s: dict[str, Any]) -> list[str]:
        drop = "-" if s.get("accuracy_drop") is None else f"{100 * s['accuracy_drop']:.2f} pt"
        return [label, str(len(kept)), ", ".join(added) or "-", f"{s['cosine_mean']:.5f}", drop,
                "yes" if s.get("met") else "no"]

    rows = [row("all INT8", [], [], {**before, "met": False})]
    prev: list[str] = []
    for i, s in enumerate(steps, start=1):
        rows.append(row(f"step {i}", s["kept_float"], s["kept_float"][len(prev):], s))
        prev = s["kept_float"]
    head = ["build", "float layers", "added", "cosine mean", "drop", f"meets {budget.describe()}"]
    return render(head, rows)
