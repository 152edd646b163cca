"""Accuracy-aware INT8: a staged search for the fastest build that meets the accuracy budget.

Called by the export pipeline right after an INT8 artifact is built. When an accuracy budget
applies (edgeship/accuracy/budget.py) and ``[quantization] accuracy_aware`` is on (default),
that build is the search's starting point, whatever its fidelity: the export-time sanity bound
(exporters/base.py ``MIN_EXPORT_COSINE``) is deferred (``ExportJob.defer_bound``) and enforced
on the build that ships. Every build is measured on the evaluation set (labels give the drop;
cosine always) on the CPU class it is built for. If plain INT8 misses, cheapest first:

1. **calibration**: the other calibration methods the backend has (``calibration_variants``),
   same graph and speed as plain INT8;
2. only if none meets: the per-layer report of the best build so far ranks its quantized ops by
   measured gain if float (``Exporter.layer_report``; rows measured at no gain are dropped);
   then for k = 1, 2, ... of the ranking (``fallback_step`` at a time, at most
   ``max_float_fraction`` of the quantized layers): **16-bit activations** for those layers
   (A16W8, where the backend has it), and **float fallback** of those layers;
3. stop at the first stage (or k) with a build that meets the budget: later stages only add
   16-bit or float compute, which is never faster on the class's INT8 kernels.

Among the builds that meet the budget the fastest ships (median latency measured on this host
when it is of the artifact's class, the candidates interleaved; otherwise fewest layers off
INT8). The manifest's ``recipe["accuracy_aware"]`` lists every candidate (cosine, drop, size,
speed) and why the winner won. When nothing meets, the artifact is removed, the candidates are
printed as a table, and ``AccuracyFallbackFailed`` (exit 1) is raised. A class this host can
neither run nor emulate is not searched (recorded): a host kernel quirk must never trigger a
fallback the device does not need, nor hide one it does.
"""

from __future__ import annotations

import dataclasses
import math
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgeship.accuracy.budget import AccuracyBudget, applicable_budget, describe_score
from edgeship.accuracy.layers import LayerError, worst_first
from edgeship.artifact.manifest import Manifest
from edgeship.config import Config
from edgeship.errors import AccuracyFallbackFailed, ExportError, UsageError
from edgeship.model.reference import reference_outputs
from edgeship.types import Precision

LAYER_SAMPLES = 32      # samples the per-layer report runs on (the ranking, not the verdict)
SEARCHED = (Precision.INT8, Precision.INT8_DYNAMIC)
# a measured gain below this (relative error reduction) is no gain: the layer is not re-exported
MIN_GAIN = 1e-3
# latencies within this fraction of the fastest tie; the tie goes to fewer layers off INT8
SPEED_TIE = 0.03
SPEED_ROUNDS = 3
SPEED_SECONDS = 0.15


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


def search_budget(cfg: Config, target: str, precision: Precision | str, devices: Sequence[str]) -> AccuracyBudget | None:
    """The budget the search judges a ``target``-``precision`` build by; None: no search (the
    export-time bound then judges the build as it is)."""
    if Precision(precision) not in SEARCHED or not cfg.quantization.accuracy_aware:
        return None
    return applicable_budget(cfg, target, Precision(precision).value, devices)


@dataclasses.dataclass
class _Candidate:
    """One build the search measured."""

    name: str
    stage: str
    job: Any
    dir: Path
    manifest: Manifest
    score: dict[str, Any]
    met: bool
    median_ms: float | None = None

    @property
    def off_int8(self) -> int:
        return len(self.job.keep_float) + len(self.job.int16_layers)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "stage": self.stage, "calibration_method": self.job.quantization.method.value,
                "kept_float": list(self.job.keep_float), "int16_activations": list(self.job.int16_layers),
                **{k: self.score.get(k) for k in ("cosine_mean", "cosine_min", "accuracy", "accuracy_drop", "measured")},
                "size_bytes": self.manifest.size_bytes, "median_ms": self.median_ms, "met": self.met}


def accuracy_aware(cfg: Config, exporter: Any, job: Any, precision: Precision, out_dir: Path,
                   manifest: Manifest, say: Callable[[str], None], plain_seconds: float | None = None) -> Manifest:
    """Run the search for the INT8 artifact just written to ``out_dir``; return the manifest that ships.

    ``plain_seconds``: how long the plain INT8 export took (recorded beside the search's time).
    """
    from edgeship.exporters.base import enforce_bound

    precision = Precision(precision)
    devices = job.cpu_target.devices if job.cpu_target is not None else ("local",)
    budget = search_budget(cfg, manifest.target, precision, devices)
    if budget is None:
        return manifest
    started = time.perf_counter()
    try:
        m = _search(cfg, exporter, job, precision, out_dir, manifest, say, budget, started, plain_seconds)
    except AccuracyFallbackFailed:
        raise
    except Exception as exc:
        # a crash inside a backend's tools must not leave a build the search has not judged published
        _unship(out_dir)
        if isinstance(exc, ExportError):
            raise
        raise ExportError(f"{job.model_name}: {out_dir.name}: the accuracy-aware search failed: "
                          f"{type(exc).__name__}: {_first_line(exc)}; the artifact was removed") from exc
    try:
        enforce_bound(job.model_name, m)
    except ExportError:
        _unship(out_dir)
        raise
    return m


def _search(cfg: Config, exporter: Any, job: Any, precision: Precision, out_dir: Path, manifest: Manifest,
            say: Callable[[str], None], budget: AccuracyBudget, started: float,
            plain_seconds: float | None) -> Manifest:
    val = _Validator(cfg, job)
    rec: dict[str, Any] = {"budget": budget.to_json(), "validation": {
        "source": val.source, "samples": len(val.feeds), "labels": val.labels is not None}}
    if plain_seconds is not None:
        rec["plain_export_seconds"] = round(plain_seconds, 2)
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
    say(f"  accuracy-aware INT8: plain {describe_score(before, budget)} misses {budget.describe()}; searching")
    plain = _Candidate("plain INT8", "plain", job, out_dir, manifest, before, False)
    with tempfile.TemporaryDirectory(prefix="edgeship-search-") as tmp:
        s = _Search(exporter, precision, val, budget, Path(tmp), say)
        s.cands.append(plain)
        # stage 1: calibration methods (same graph, same speed as plain INT8)
        variants, skipped = exporter.calibration_variants(job, precision)
        stages: list[dict[str, Any]] = [{"stage": "calibration", "tried": [n for n, _ in variants], "not_tried": skipped}]
        for name, vjob in variants:
            s.build(name, "calibration", vjob)
        if not s.met():
            stages.append(_layer_stages(cfg, exporter, precision, out_dir, s, rec))
        else:
            stages.append({"stage": "16-bit activations / float fallback", "not_tried":
                           "a calibration method met the budget; 16-bit or float layers are never faster than INT8"})
        rec["stages"] = stages
        met = s.met()
        rec["seconds"] = round(time.perf_counter() - started, 2)
        versus = f" (plain INT8 export: {plain_seconds:.1f} s)" if plain_seconds else ""
        say(f"  accuracy-aware search: {len(s.cands) - 1 + len(s.failed)} build(s) in {rec['seconds']:.1f} s{versus}")
        if not met:
            rec["candidates"] = [c.to_json() for c in s.cands] + s.failed
            for line in table(s.cands, budget).splitlines():
                say(line)
            _unship(out_dir)
            raise AccuracyFallbackFailed(_why_failed(cfg, job, out_dir, before, budget, rec))
        winner, why = _choose(met, plain, val.feeds[0], say)
        rec["candidates"] = [c.to_json() for c in s.cands] + s.failed
        rec["winner"] = {"name": winner.name, "why": why}
        rec["final"] = {**winner.score, "met": True, "kept_float": list(winner.job.keep_float)}
        rec["status"] = {"calibration": "met by calibration", "int16 activations": "met by int16 activations",
                         "float fallback": "met by fallback"}[winner.stage]
        by_layer = {e["layer"]: e for e in rec.get("_errors", [])}
        rec["reverted"] = [by_layer[x] for x in winner.job.keep_float if x in by_layer]
        rec.pop("_errors", None)
        final = _ship(winner, out_dir)
        rec["seconds"] = round(time.perf_counter() - started, 2)     # the speed measurement included
    n_off = winner.off_int8
    what = (f"{len(winner.job.keep_float)} of {rec.get('quantized_layers', '?')} layers kept in float"
            if winner.stage == "float fallback" else
            f"{n_off} layer(s) with 16-bit activations" if winner.stage == "int16 activations" else winner.name)
    say(f"  {what} to meet {budget.describe()} (was {describe_score(before, budget)}, "
        f"now {describe_score(winner.score, budget)}); {why}")
    return _record(out_dir, final, rec)


class _Search:
    """Builds candidates into a scratch directory and scores them on the artifact's class."""

    def __init__(self, exporter: Any, precision: Precision, val: _Validator, budget: AccuracyBudget,
                 scratch: Path, say: Callable[[str], None]) -> None:
        self.exporter, self.precision, self.val, self.budget = exporter, precision, val, budget
        self.scratch, self.say = scratch, say
        self.cands: list[_Candidate] = []
        self.failed: list[dict[str, Any]] = []

    def build(self, name: str, stage: str, job: Any) -> _Candidate | None:
        out = self.scratch / f"cand-{len(self.cands) + len(self.failed)}"
        try:
            m = self.exporter.export(dataclasses.replace(job, defer_bound=True), self.precision, out)
            score = self.val.score(out, m)
        except (ExportError, UsageError, NotMeasurable) as exc:
            # one candidate the backend cannot build is a row of the table, not the end of the search
            self.failed.append({"name": name, "stage": stage, "kept_float": list(job.keep_float),
                                "int16_activations": list(job.int16_layers), "error": _first_line(exc), "met": False})
            self.say(f"    {name}: failed ({_first_line(exc)})")
            return None
        c = _Candidate(name, stage, job, out, m, score, self.budget.met(score))
        self.cands.append(c)
        self.say(f"    {name}: {describe_score(score, self.budget)}" + (" (meets)" if c.met else ""))
        return c

    def met(self) -> list[_Candidate]:
        return [c for c in self.cands if c.met]


def _layer_stages(cfg: Config, exporter: Any, precision: Precision, out_dir: Path, s: _Search,
                  rec: dict[str, Any]) -> dict[str, Any]:
    """Stages 2-3: rank the quantized layers of the best build so far, then 16-bit activations
    and float fallback for the top k, k growing until a build meets the budget."""
    from edgeship.accuracy.report import RANKING_METRIC, layer_record, store_layers

    base = max(s.cands, key=lambda c: c.score["cosine_mean"])
    stage: dict[str, Any] = {"stage": "16-bit activations / float fallback", "base": base.name}
    try:
        errors = exporter.layer_report(base.job, precision, base.dir, s.val.samples[:LAYER_SAMPLES])
    except UsageError as exc:
        stage["not_tried"] = f"no per-layer report: {exc}"
        return stage
    store_layers(cfg, out_dir.name, layer_record(base.dir, errors, min(len(s.val.samples), LAYER_SAMPLES),
                                                 f"all-INT8 ({base.name}), before the accuracy-aware fallback"))
    ranking, no_gain = _rank(errors)
    n = len(errors)
    limit = min(n, math.floor(cfg.quantization.max_float_fraction * n + 1e-9))
    rec.update(ranking_metric=RANKING_METRIC, quantized_layers=n, max_float_fraction=cfg.quantization.max_float_fraction,
               max_float_layers=limit, ranking=[e.layer for e in ranking], no_gain=[e.layer for e in no_gain],
               _errors=[e.to_json() for e in errors])
    int16_why = exporter.int16_activations(precision)
    stage["int16_activations"] = int16_why or "tried for the same layers as the float fallback, before it"
    if no_gain:
        stage["not_re_exported"] = f"{len(no_gain)} layer(s) whose measured gain if float is below {MIN_GAIN:g}"
    steps: list[dict[str, Any]] = []
    k, top = 0, min(limit, len(ranking))
    while k < top and not s.met():
        k = min(k + cfg.quantization.fallback_step, top)
        layers = tuple(e.layer for e in ranking[:k])
        if int16_why is None:
            c = s.build(f"int16 activations x{k}", "int16 activations", dataclasses.replace(base.job, int16_layers=layers))
            if c is not None:
                steps.append({"int16_activations": list(layers), **c.score, "met": c.met})
        kept = tuple(dict.fromkeys(base.job.keep_float + layers))
        c = s.build(f"float x{k}", "float fallback", dataclasses.replace(base.job, keep_float=kept))
        if c is not None:
            steps.append({"kept_float": list(kept), **c.score, "met": c.met})
    rec["steps"] = steps
    if not s.met():
        stage["why_stopped"] = (f"the budget needs more than {limit} of {n} layers off INT8 ([quantization] "
                                f"max_float_fraction = {cfg.quantization.max_float_fraction:g})" if top == limit else
                                f"no more layers with a measured gain ({len(ranking)} of {n})")
    return stage


def _rank(errors: list[LayerError]) -> tuple[list[LayerError], list[LayerError]]:
    """(layers worth a re-export, worst first; layers measured to gain nothing if float)."""
    no_gain = [e for e in errors if e.gain_if_float is not None and e.gain_if_float < MIN_GAIN]
    return [e for e in worst_first(errors) if e not in no_gain], no_gain


def _choose(met: list[_Candidate], plain: _Candidate, feed: dict[str, np.ndarray],
            say: Callable[[str], None]) -> tuple[_Candidate, str]:
    """The fastest build meeting the budget, measured on this host when it is of the artifact's class."""
    from edgeship.runtimes.cpuinfo import cpu_features

    host = cpu_features()["cpu_class"]
    cls = (plain.manifest.built_for or {}).get("cpu_class") or host
    fewest = sorted(met, key=lambda c: (c.off_int8, -c.score["cosine_mean"]))
    if cls != host:
        why = (f"{len(met)} build(s) meet the budget; speed not measured (this host is {host}, the artifact is for "
               f"{cls}): the one with the fewest layers off INT8 ({fewest[0].off_int8}), then the best cosine")
        return fewest[0], why
    try:
        _time([plain, *met], feed)
    except Exception as exc:    # noqa: BLE001  (a runtime that cannot time here: decided without speed, and said)
        return fewest[0], f"speed not measured ({_first_line(exc)}): the fewest layers off INT8, then the best cosine"
    fastest = min(c.median_ms for c in met if c.median_ms is not None)
    ties = [c for c in met if c.median_ms is not None and c.median_ms <= fastest * (1 + SPEED_TIE)]
    win = min(ties, key=lambda c: (c.off_int8, -c.score["cosine_mean"]))
    rest = ", ".join(f"{c.name} {c.median_ms:.3f} ms" for c in met if c is not win)
    why = (f"fastest of {len(met)} build(s) meeting the budget, median latency on this {host} host "
           f"(1 thread, {SPEED_ROUNDS} interleaved rounds): {win.median_ms:.3f} ms"
           + (f" vs {rest}" if rest else "") + f"; plain INT8 {plain.median_ms:.3f} ms")
    if len(ties) > 1:
        why += f"; within {SPEED_TIE:.0%} of the fastest, the fewest layers off INT8 won"
    return win, why


def _time(cands: Sequence[_Candidate], feed: dict[str, np.ndarray]) -> None:
    """Median latency of each candidate (1 thread), rounds interleaved so drift hits all alike."""
    import statistics

    from edgeship.runtimes.base import get_runtime

    loaded = []
    try:
        for c in cands:
            rt = get_runtime(c.manifest.runtime)(str(c.dir / c.manifest.model_file), c.manifest.to_dict(), 1)
            rt.load()
            loaded.append((c, rt, rt.prepare(feed)))
        per: dict[int, list[float]] = {id(c): [] for c in cands}
        for _ in range(SPEED_ROUNDS):
            for c, rt, prepared in loaded:
                for _ in range(2):
                    rt.invoke(prepared)
                times: list[float] = []
                end = time.perf_counter() + SPEED_SECONDS
                while len(times) < 5 or time.perf_counter() < end:
                    t0 = time.perf_counter_ns()
                    rt.invoke(prepared)
                    times.append((time.perf_counter_ns() - t0) / 1e6)
                per[id(c)].append(statistics.median(times))
        for c in cands:
            c.median_ms = round(statistics.median(per[id(c)]), 4)
    finally:
        for _, rt, _ in loaded:
            rt.close()


def _ship(winner: _Candidate, out_dir: Path) -> Manifest:
    """Publish the winner's files as the artifact (atomically, edgeship/artifact/atomic.py)."""
    from edgeship.artifact.atomic import atomic_directory

    src = winner.dir.resolve()
    if src == out_dir.resolve():
        return winner.manifest
    with atomic_directory(out_dir) as tmp:
        for p in src.iterdir():
            if p.is_dir():
                shutil.copytree(p, tmp / p.name)
            else:
                shutil.copy2(p, tmp / p.name)
    return winner.manifest


def _why_failed(cfg: Config, job: Any, out_dir: Path, before: dict[str, Any], budget: AccuracyBudget,
                rec: dict[str, Any]) -> str:
    from edgeship.artifact.eval_file import eval_path

    frac = cfg.quantization.max_float_fraction
    n, limit = rec.get("quantized_layers"), rec.get("max_float_layers")
    last = rec["stages"][-1]
    if n is None:
        why = f"no calibration method meets it and {last.get('not_tried', 'no layer can be ranked')}"
    elif limit:
        why = (f"the budget needs more than {limit} of {n} layers in float ([quantization] max_float_fraction = {frac:g})"
               if last.get("why_stopped", "").startswith("the budget") else last.get("why_stopped", "nothing met it"))
    else:
        why = f"[quantization] max_float_fraction = {frac:g} allows no layer of {n} in float"
    where = (f" The per-layer error of the build the ranking came from is in {eval_path(cfg)} (layers.{out_dir.name})."
             if n is not None else "")
    return (f"{job.model_name}: {out_dir.name}: {describe_score(before, budget)} misses {budget.describe()} and {why}; "
            f"the artifact was removed.{where} Raise max_float_fraction, relax the budget, or change the model")


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


def _first_line(exc: BaseException) -> str:
    lines = [ln for ln in str(exc).strip().splitlines() if ln.strip()]
    return (lines[0] if lines else type(exc).__name__)[:300]


def table(cands: Sequence[_Candidate], budget: AccuracyBudget) -> str:
    """What was tried: one row per build (plain INT8 first)."""
    from edgeship.ui.table import render

    rows = []
    for c in cands:
        s = c.score
        drop = "-" if s.get("accuracy_drop") is None else f"{100 * s['accuracy_drop']:.2f} pt"
        rows.append([c.name, str(len(c.job.keep_float)), ", ".join(c.job.keep_float) or "-",
                     ", ".join(c.job.int16_layers) or "-", f"{s['cosine_mean']:.5f}", drop,
                     f"{c.manifest.size_bytes / 1024:.1f} KiB", "yes" if c.met else "no"])
    head = ["build", "float layers", "kept float", "16-bit activations", "cosine mean", "drop", "size",
            f"meets {budget.describe()}"]
    return render(head, rows)
