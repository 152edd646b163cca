"""eval: every artifact vs the FP32 PyTorch reference on the evaluation set.

Fidelity (cosine, max abs error, SNR) for every artifact, and per output the metrics of its
kind (edgeship/measure/output_kinds.py): top-1 agreement for classification outputs, nearest-neighbour
retrieval agreement and rank correlation for embeddings; task accuracy and its drop when the
evaluation source yields labels and the model has a classification output. The reference
always runs here (torch); the artifact runs either in-process on this host (device
``local``, the default) or through the standalone runner on a device (``device=NAME``, see
device_eval.py), because INT8 numerics depend on the CPU that runs them. An artifact whose runtime cannot run there
(CoreML on Linux, a missing package, a phone's native tools) is SKIPPED with the reason.

build/reports/eval.json (schema ``edgeship.eval/2``) keeps one entry per
``"<device>/<artifact>"``, each with the artifact digest (sha256 of its manifest.json) and the
config digest it was measured with. An eval of a subset MERGES into the file: entries it did
not touch are kept as they are, even when they were measured with another config, another
sample count or an artifact since re-exported; they carry their own digests and sample
count, and the gate refuses evidence whose digests no longer match (stale), so keeping them
loses nothing and can never pass a gate wrongly. A file of an older schema has no digests and
is replaced (said through ``on_event``); an unreadable one is an error (nothing overwritten).
"""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from edgeship.calibration import DataSource, Sample, load_samples
from edgeship.config import Config
from edgeship.errors import ArtifactError, EdgeshipError, RuntimeFailure, UsageError
from edgeship.artifact.atomic import sha256_file, write_json_atomic
from edgeship.artifact.manifest import Manifest
from edgeship.metrics import accuracy, closeness, output_scores
from edgeship.model.reference import load_reference, run_reference
from edgeship.measure.output_kinds import output_kinds
from edgeship.artifact.selection import ArtifactRef, find_artifacts
from edgeship.types import OutputKind, Precision, Target

SCHEMA = "edgeship.eval/2"
LOCAL = "local"


def eval_path(cfg: Config) -> Path:
    return cfg.build / "reports" / "eval.json"


def entry_key(device: str, artifact: str) -> str:
    return f"{device}/{artifact}"


def evaluation_samples(cfg: Config) -> list[Sample]:
    ref = cfg.data.evaluation or cfg.data.calibration
    if ref is None:
        raise UsageError("eval needs data: set [data] evaluation (or calibration) in edgeship.toml")
    key = "data.evaluation" if cfg.data.evaluation else "data.calibration"
    return load_samples(DataSource(ref, key, cfg.root), cfg.model.inputs, cfg.data.evaluation_samples, cfg.data.label_key)


def run_artifact(ref: ArtifactRef, feeds: list[dict[str, np.ndarray]], threads: int = 1) -> list[list[np.ndarray]]:
    """Run an artifact in-process on each feed; RuntimeUnavailable propagates (caller skips)."""
    from edgeship.runtimes.base import RuntimeLoadError, RuntimeRunError, get_runtime

    manifest = ref.manifest.to_dict()
    names = [t["name"] for t in manifest["outputs"]]
    try:
        with get_runtime(ref.manifest.runtime)(str(ref.model_path), manifest, threads) as rt:
            return [[out[n] for n in names] for out in (rt.run(f) for f in feeds)]
    except RuntimeLoadError as exc:
        raise ArtifactError(f"{ref.path}: {exc}; re-run 'edgeship export'") from exc
    except RuntimeRunError as exc:
        raise RuntimeFailure(f"{ref.path}: {exc}") from exc


def host_cpu() -> dict[str, Any]:
    """This host's CPU as the runner reports it (its cpu_features once runtimes/cpuinfo.py exists)."""
    try:
        from edgeship.runtimes.cpuinfo import cpu_features  # type: ignore[import-not-found]
    except ImportError:
        from edgeship.runtimes.runner import environment

        return cpu_block(environment().get("cpu"))
    return dict(cpu_features())


def cpu_block(cpu: Any) -> dict[str, Any]:
    """A result env's ``cpu`` as recorded in an entry: the features dict, or the model string wrapped."""
    if isinstance(cpu, dict):
        return dict(cpu)
    return {"model": cpu} if cpu else {}


class Scorer:
    """The FP32 reference outputs and labels of the evaluation set; scores candidate outputs."""

    def __init__(self, cfg: Config, samples: list[Sample]) -> None:
        from edgeship.compress.evidence import SourceReferences

        self.samples = samples
        labels = [s.label for s in samples if s.label is not None]
        self.labels = labels if len(labels) == len(samples) else None
        model = load_reference(cfg)
        self.outputs = [run_reference(model, s.inputs, cfg.model.inputs) for s in samples]
        self.kinds = output_kinds(cfg.model.output_kinds, cfg.model.outputs, self.outputs)
        # labels are class ids: accuracy is measured on the first classification output, if any
        self.accuracy_index = next((i for i, o in enumerate(self.kinds) if o.kind is OutputKind.CLASSIFICATION), None)
        scored = self.labels is not None and self.accuracy_index is not None
        self.accuracy = accuracy(self.outputs, self.labels, self.accuracy_index or 0) if scored else None
        self._sources = SourceReferences(cfg, [s.inputs for s in samples], self.labels, self.outputs, self.accuracy,
                                         self.accuracy_index)

    def score(self, outs: list[list[np.ndarray]], manifest: Manifest) -> dict[str, Any]:
        """Fidelity and drop vs the FP32 model the artifact was exported from (the compressed one,
        when it came from build/compressed), and the drop vs the original model as well."""
        ref_outs, ref_acc, source = self._sources.for_manifest(manifest)
        if ref_outs and outs and len(outs[0]) != len(ref_outs[0]):
            raise ArtifactError(f"{manifest.target}-{manifest.precision} has {len(outs[0])} output(s), the FP32 model "
                                f"{len(ref_outs[0])}; re-run 'edgeship export'")
        scores: dict[str, Any] = dict(closeness(ref_outs, outs))   # over all outputs, concatenated
        per = {o.name: {"kind": o.kind.value, "kind_from": o.kind_from, **output_scores(ref_outs, outs, i, o.kind.value)}
               for i, o in enumerate(self.kinds)}
        # one figure per metric for the entry (and the gate): the worst output of the kind it applies to
        for key in ("top1_agreement", "retrieval_agreement", "rank_correlation"):
            vals = [p[key] for p in per.values() if p[key] is not None]
            scores[key] = min(vals) if vals else None
        scores["outputs"] = per
        scored = self.labels is not None and self.accuracy_index is not None
        acc = accuracy(outs, self.labels, self.accuracy_index or 0) if scored else None
        scores["accuracy"] = acc
        scores["accuracy_drop"] = (ref_acc - acc) if (acc is not None and ref_acc is not None) else None
        scores["accuracy_drop_original"] = (self.accuracy - acc) if (acc is not None and self.accuracy is not None) else None
        scores["source"] = source
        return scores


def new_entry(cfg: Config, ref: ArtifactRef, device: str, samples: int) -> dict[str, Any]:
    """An entry with its provenance; metrics are None until ``entry.update(scores)``."""
    return {
        "device": device, "artifact": ref.name, "target": ref.target.value, "precision": ref.precision.value,
        "artifact_digest": sha256_file(ref.path / "manifest.json"), "config_digest": cfg.digest,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "status": "ok", "skip_reason": None, "cosine_min": None, "cosine_mean": None, "max_abs_err": None,
        "snr_db": None, "top1_agreement": None, "retrieval_agreement": None, "rank_correlation": None,
        "accuracy": None, "accuracy_drop": None, "outputs": {}, "samples": samples, "cpu": {},
        "size_bytes": ref.manifest.size_bytes,
    }


def load_eval(cfg: Config, on_event: Callable[[str], None] | None = None) -> dict[str, Any] | None:
    """The v2 eval.json, or None when absent (or of an older schema, which is replaced)."""
    path = eval_path(cfg)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except ValueError as exc:
        raise ArtifactError(f"{path}: unreadable ({exc}); delete it and run 'edgeship eval' again") from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA or not isinstance(data.get("entries"), dict):
        if on_event is not None:
            on_event(f"{path}: schema {data.get('schema') if isinstance(data, dict) else None!r} has no digests; "
                     f"replaced by {SCHEMA}")
        return None
    return data


def evaluate(
    cfg: Config,
    targets: tuple[Target, ...] | None = None,
    precisions: tuple[Precision, ...] | None = None,
    on_event: Callable[[str], None] | None = None,
    device: str | None = None,
    chunk: int = 64,
    cluster: str | None = None,
) -> dict[str, Any]:
    """Evaluate the matching artifacts (on ``device``, else in-process here) and merge into eval.json.

    Returns the whole merged report; ``report["updated"]`` lists the keys written by this call.
    """
    say = on_event or (lambda _m: None)
    if chunk < 1:
        raise UsageError(f"--chunk must be >= 1, got {chunk}")
    refs = find_artifacts(cfg, targets, precisions)
    old = load_eval(cfg, say)   # before any work: an unreadable file stops us, untouched
    samples = evaluation_samples(cfg)
    say(f"reference {cfg.model.name} on {len(samples)} samples ...")
    scorer = Scorer(cfg, samples)
    if device is None:
        produced = _evaluate_here(cfg, refs, scorer, say)
    elif cluster or cfg.cluster.address:    # on the node that owns the device: edgeship/cluster/
        from edgeship.cluster.eval import evaluate_on_cluster

        produced = evaluate_on_cluster(cfg, cluster or cfg.cluster.address or "", device, refs, scorer, chunk, say)
    else:
        from edgeship.measure.evaluate_device import evaluate_on_device

        produced = evaluate_on_device(cfg, device, refs, scorer, chunk, say)
    entries: list[dict[str, Any]] = []
    try:
        entries.extend(produced)   # keeps the entries yielded before a failure
    except EdgeshipError as exc:
        # what was measured is kept, and the failed artifact's old entry must not stand in for it
        failed = getattr(exc, "eval_entry", None)
        _merge(cfg, scorer, old, entries + ([failed] if failed else []))
        raise
    return _merge(cfg, scorer, old, entries)


def _merge(cfg: Config, scorer: Scorer, old: dict[str, Any] | None, entries: list[dict[str, Any]]) -> dict[str, Any]:
    report: dict[str, Any] = {
        "schema": SCHEMA, "model": cfg.model.name, "config_digest": cfg.digest, "samples": len(scorer.samples),
        "reference": {"accuracy": scorer.accuracy, "labels": scorer.labels is not None,
                      "accuracy_output": None if scorer.accuracy_index is None else scorer.kinds[scorer.accuracy_index].name},
        "entries": dict(old["entries"]) if old else {},
    }
    for e in entries:
        report["entries"][entry_key(e["device"], e["artifact"])] = e
    if old and old.get("layers"):   # per-layer reports (edgeship explain, edgeship/accuracy/report.py)
        report["layers"] = old["layers"]
    write_json_atomic(eval_path(cfg), report)
    return {**report, "updated": [entry_key(e["device"], e["artifact"]) for e in entries]}


def _evaluate_here(cfg: Config, refs: list[ArtifactRef], scorer: Scorer,
                   say: Callable[[str], None]) -> Iterator[dict[str, Any]]:
    from edgeship.runtimes.base import RuntimeUnavailable

    feeds = [s.inputs for s in scorer.samples]
    cpu = host_cpu()
    for ref in refs:
        say(f"eval {ref.name} ...")
        entry = new_entry(cfg, ref, LOCAL, len(feeds))
        entry["cpu"] = cpu
        try:
            outs = run_artifact(ref, feeds)
        except RuntimeUnavailable as exc:
            entry.update(status="skipped", skip_reason=str(exc))
            say(f"  {ref.name}: SKIPPED ({exc})")
        else:
            entry.update(scorer.score(outs, ref.manifest))
        yield entry


def eval_table(report: dict[str, Any]) -> Any:
    """The entries this call wrote (``report["updated"]``), else every entry, as an edgeship.ui.table.Table."""
    from edgeship.ui.table import Column, Table

    table = Table([
        Column("entry", "device/artifact"), Column("status", "status", priority=6),
        Column("size_bytes", "size", "bytes", priority=5),
        Column("cosine_min", "cos min", "number", priority=1, fmt="{:.5f}"),
        Column("cosine_mean", "cos mean", "number", priority=4, fmt="{:.5f}"),
        Column("max_abs_err", "max|err|", "number", priority=7, fmt="{:.4g}"),
        Column("snr_db", "SNR dB", "number", priority=3, fmt="{:.1f}"),
        Column("top1_agreement", "top1 agr", "percent", priority=2, digits=4),
        # embeddings: nearest-neighbour (retrieval) agreement with the FP32 reference
        Column("retrieval_agreement", "NN agr", "percent", priority=2, digits=4),
        Column("accuracy", "accuracy", "percent", digits=4),
        Column("accuracy_drop", "drop", "number", fmt=lambda v: f"{100 * v:+.2f} pt"),
        Column("notes", "notes", wrap=True),
    ], title=f"{report['model']}: {report['samples']} evaluation samples")
    table.add_row(entry="pytorch-fp32", status="reference", accuracy=report["reference"]["accuracy"])
    for key in report.get("updated") or list(report["entries"]):
        e = report["entries"][key]
        row = {"entry": key, "status": e["status"], "size_bytes": e.get("size_bytes")}
        if e["status"] != "ok":
            table.add_row(**row, notes=f"{e['status'].upper()}: {e.get('skip_reason') or ''}".rstrip(": "))
            continue
        table.add_row(**row, **{k: e.get(k) for k in ("cosine_min", "cosine_mean", "max_abs_err", "top1_agreement",
                                                      "retrieval_agreement", "accuracy", "accuracy_drop")},
                      snr_db="-" if e["snr_db"] is None else e["snr_db"])
    return table


def format_table(report: dict[str, Any], width: int | None = None, wide: bool = False) -> str:
    return str(eval_table(report).render(width, wide=wide))
