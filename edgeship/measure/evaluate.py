"""eval: every artifact vs the FP32 PyTorch reference on the evaluation set.

Fidelity (cosine, max abs error, SNR) for every artifact, and per output the metrics of its
kind (edgeship/measure/output_kinds.py): top-1 agreement for classification outputs, nearest-neighbour
retrieval agreement and rank correlation for embeddings; task accuracy and its drop when the
evaluation source yields labels and the model has a classification output. The reference
always runs here (torch); the artifact runs either in-process on this host (device
``local``, the default) or through the standalone runner on a device (``device=NAME``, see
device_eval.py), because INT8 numerics depend on the CPU that runs them. An artifact whose runtime cannot run there
(CoreML on Linux, a missing package, a phone's native tools) is SKIPPED with the reason, except a
CoreML W8A8 artifact evaluated here: its manifest records the fidelity of its torch W8A8
simulation, which becomes the entry, marked ``evidence: "simulated"`` (``simulated_scores``).
Every entry says how its numbers were obtained (``evidence``, edgeship.types.Evidence).

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

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from edgeship.artifact.atomic import exclusive, write_json_atomic
from edgeship.artifact.eval_file import SCHEMA, entry_key, eval_path, load_eval
from edgeship.artifact.inprocess import run_artifact
from edgeship.artifact.manifest import Manifest
from edgeship.artifact.selection import ArtifactRef, find_artifacts
from edgeship.calibration import evaluation_samples
from edgeship.config import Config
from edgeship.errors import EdgeshipError, UsageError
from edgeship.measure.evaluate_device import evaluate_on_device
from edgeship.measure.scoring import Scorer, host_cpu, new_entry
from edgeship.measure.sessions import record_evals
from edgeship.types import Evidence, OutputKind, Precision, Target

# where the artifacts run when ``device`` is named: the device itself (evaluate_on_device), or
# the Ray node that owns it (edgeship/cluster/eval.py, chosen by the caller one layer up)
Produce = Callable[[Config, str, list[ArtifactRef], Scorer, int, Callable[[str], None]], Iterable[dict[str, Any]]]

LOCAL = "local"


def evaluate(
    cfg: Config,
    targets: tuple[Target, ...] | None = None,
    precisions: tuple[Precision, ...] | None = None,
    on_event: Callable[[str], None] | None = None,
    device: str | None = None,
    chunk: int = 64,
    produce: Produce | None = None,
) -> dict[str, Any]:
    """Evaluate the matching artifacts (on ``device``, else in-process here) and merge into eval.json.

    ``produce`` runs the artifacts of ``device`` somewhere else than through the device itself
    (the API passes the cluster's when a Ray lab is configured). Returns the whole merged report;
    ``report["updated"]`` lists the keys written by this call.
    """
    say = on_event or (lambda _m: None)
    if chunk < 1:
        raise UsageError(f"--chunk must be >= 1, got {chunk}")
    refs = find_artifacts(cfg, targets, precisions)
    load_eval(cfg, say)   # before any work: an unreadable file stops us, untouched (merged under the lock later)
    samples = evaluation_samples(cfg)
    say(f"reference {cfg.model.name} on {len(samples)} samples ...")
    scorer = Scorer(cfg, samples)
    if device is None:
        produced: Iterable[dict[str, Any]] = _evaluate_here(cfg, refs, scorer, say)
    else:
        produced = (produce or evaluate_on_device)(cfg, device, refs, scorer, chunk, say)
    entries: list[dict[str, Any]] = []
    try:
        entries.extend(produced)   # keeps the entries yielded before a failure
    except EdgeshipError as exc:
        # what was measured is kept, and the failed artifact's old entry must not stand in for it
        failed = getattr(exc, "eval_entry", None)
        _merge(cfg, scorer, entries + ([failed] if failed else []))
        raise
    return _merge(cfg, scorer, entries)


def _merge(cfg: Config, scorer: Scorer, entries: list[dict[str, Any]]) -> dict[str, Any]:
    # read-modify-write under the directory lock (as the history's, sessions.py), reading again:
    # the file read before the (long) evaluation may since hold another eval's or explain's entries
    with exclusive(eval_path(cfg).parent):
        return _merge_locked(cfg, scorer, load_eval(cfg), entries)


def _merge_locked(cfg: Config, scorer: Scorer, old: dict[str, Any] | None,
                  entries: list[dict[str, Any]]) -> dict[str, Any]:
    report: dict[str, Any] = {
        "schema": SCHEMA, "model": cfg.model.name, "config_digest": cfg.digest, "samples": len(scorer.samples),
        "reference": {"accuracy": scorer.accuracy, "labels": scorer.labels is not None,
                      "accuracy_output": None if scorer.accuracy_index is None else scorer.kinds[scorer.accuracy_index].name},
        "entries": dict(old["entries"]) if old else {},
    }
    for e in entries:
        report["entries"][entry_key(e["device"], e["artifact"])] = e
    for key in ("layers", "device_layers"):   # per-layer reports (explain; eval --device --layers) are kept
        if old and old.get(key):
            report[key] = old[key]
    write_json_atomic(eval_path(cfg), report)
    # fidelity and size over commits: one history line per measured entry (sessions.py)
    record_evals(cfg, entries)
    return {**report, "updated": [entry_key(e["device"], e["artifact"]) for e in entries]}


def _evaluate_here(cfg: Config, refs: list[ArtifactRef], scorer: Scorer,
                   say: Callable[[str], None]) -> Iterator[dict[str, Any]]:
    from edgeship.runtimes.base import RuntimeUnavailable

    feeds = [s.inputs for s in scorer.samples]
    cpu = host_cpu()
    for ref in refs:
        say(f"eval {ref.name} ...")
        entry = new_entry(cfg, ref, LOCAL, len(feeds))
        entry.update(cpu=cpu, evidence=Evidence.HOST.value)
        try:
            outs = run_artifact(ref, feeds)
        except RuntimeUnavailable as exc:
            sim = simulated_scores(ref.manifest, scorer)
            if sim is None:
                entry.update(status="skipped", skip_reason=str(exc))
                say(f"  {ref.name}: SKIPPED ({exc})")
            else:
                # not run (``not_run`` says why): the numbers are the simulation's, labelled as such
                entry.update(sim, cpu={}, evidence=Evidence.SIMULATED.value, not_run=str(exc))
                say(f"  {ref.name}: simulated ({exc}; fidelity of the W8A8 simulation recorded at export)")
        else:
            entry.update(scorer.score(outs, ref.manifest))
        yield entry


def simulated_scores(manifest: Manifest, scorer: Scorer) -> dict[str, Any] | None:
    """Eval entry fields from the torch W8A8 simulation a CoreML INT8 manifest records, or None
    when it records none (fp32, fp16, int8-weight: nothing was simulated, nothing to judge).

    The simulation compared the calibrated fake-quant module, the one converted into the
    package, with the FP32 model on up to 16 calibration samples at export. Living in the
    manifest, its numbers are covered by the artifact digest the entry carries: a re-export or an
    edited manifest makes the entry stale. It has fidelity only: accuracy and retrieval agreement
    stay None (the gate SKIPS those checks: no number).
    """
    sim = manifest.recipe.get("torch_simulation")
    if not isinstance(sim, dict) or not isinstance(sim.get("cosine_mean"), (int, float)):
        return None
    out = {k: sim.get(k) for k in ("cosine_min", "cosine_mean", "max_abs_err", "snr_db")}
    # its top-1 is over the first output's last axis: meaningful for one classification output only
    one_class = len(scorer.kinds) == 1 and scorer.kinds[0].kind is OutputKind.CLASSIFICATION
    return {**out, "top1_agreement": sim.get("top1_agreement") if one_class else None,
            "samples": sim.get("samples"), "simulation": sim.get("what")}


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
        simulated = e.get("evidence") == Evidence.SIMULATED.value
        note = (f"simulated at export ({e.get('samples')} calibration samples); not run here: {e.get('not_run')}"
                if simulated else None)
        table.add_row(**row, **{k: e.get(k) for k in ("cosine_min", "cosine_mean", "max_abs_err", "top1_agreement",
                                                      "retrieval_agreement", "accuracy", "accuracy_drop")},
                      snr_db="-" if e["snr_db"] is None else e["snr_db"], notes=note)
    return table


def format_table(report: dict[str, Any], width: int | None = None, wide: bool = False) -> str:
    return str(eval_table(report).render(width, wide=wide))
