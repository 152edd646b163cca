"""eval: every artifact vs the FP32 PyTorch reference on the evaluation set, in-process.

Fidelity (cosine, max abs error, SNR, top-1 agreement) for every artifact; task accuracy and
its drop when the evaluation source yields labels. An artifact whose runtime cannot run here
(CoreML on Linux, a missing package) is SKIPPED with the reason. Writes build/reports/eval.json.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from edgeship.calibration import DataSource, Sample, load_samples
from edgeship.config import Config
from edgeship.errors import ArtifactError, RuntimeFailure, UsageError
from edgeship.fsutil import write_json_atomic
from edgeship.metrics import accuracy, fidelity
from edgeship.model import load_reference, run_reference
from edgeship.selection import ArtifactRef, find_artifacts
from edgeship.types import Precision, Target

SCHEMA = "edgeship.eval/1"


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


def evaluate(
    cfg: Config,
    targets: tuple[Target, ...] | None = None,
    precisions: tuple[Precision, ...] | None = None,
    on_event: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    from edgeship.runtimes.base import RuntimeUnavailable

    say = on_event or (lambda _m: None)
    refs = find_artifacts(cfg, targets, precisions)
    samples = evaluation_samples(cfg)
    feeds = [s.inputs for s in samples]
    labels = [s.label for s in samples if s.label is not None]
    has_labels = len(labels) == len(samples)
    say(f"reference {cfg.model.name} on {len(samples)} samples ...")
    model = load_reference(cfg)
    reference = [run_reference(model, f, cfg.model.inputs) for f in feeds]
    ref_acc = accuracy(reference, labels) if has_labels else None
    report: dict[str, Any] = {
        "schema": SCHEMA, "model": cfg.model.name, "samples": len(samples),
        "reference": {"accuracy": ref_acc}, "artifacts": {},
    }
    from edgeship.compress.evidence import SourceReferences

    sources = SourceReferences(cfg, feeds, labels if has_labels else None, reference, ref_acc)
    for ref in refs:
        say(f"eval {ref.name} ...")
        entry: dict[str, Any] = {"target": ref.target.value, "precision": ref.precision.value,
                                 "size_bytes": ref.manifest.size_bytes}
        try:
            outs = run_artifact(ref, feeds)
        except RuntimeUnavailable as exc:
            entry.update(status="skipped", skip_reason=str(exc))
            report["artifacts"][ref.name] = entry
            say(f"  {ref.name}: SKIPPED ({exc})")
            continue
        # fidelity and drop vs the FP32 model it was exported from (compressed or original)
        src_out, src_acc, entry["source"] = sources.for_manifest(ref.manifest)
        entry.update(status="ok", skip_reason=None, **fidelity(src_out, outs))
        acc = accuracy(outs, labels) if has_labels else None
        entry["accuracy"] = acc
        entry["accuracy_drop"] = (src_acc - acc) if (acc is not None and src_acc is not None) else None
        entry["accuracy_drop_original"] = (ref_acc - acc) if (acc is not None and ref_acc is not None) else None
        report["artifacts"][ref.name] = entry
    write_json_atomic(cfg.build / "reports" / "eval.json", report)
    return report


def format_table(report: dict[str, Any]) -> str:
    ref_acc = report["reference"]["accuracy"]
    head = ["artifact", "status", "size KiB", "cos min", "cos mean", "max|err|", "SNR dB", "top1 agr", "accuracy", "drop"]
    rows = [["pytorch-fp32", "reference", "", "", "", "", "", "", _pct(ref_acc), ""]]
    for name, e in report["artifacts"].items():
        if e["status"] != "ok":
            rows.append([name, "SKIPPED", f"{e['size_bytes'] / 1024:.1f}", e.get("skip_reason", "")[:60], "", "", "", "", "", ""])
            continue
        rows.append([
            name, "ok", f"{e['size_bytes'] / 1024:.1f}", f"{e['cosine_min']:.5f}", f"{e['cosine_mean']:.5f}",
            f"{e['max_abs_err']:.4g}", "-" if e["snr_db"] is None else f"{e['snr_db']:.1f}", _pct(e["top1_agreement"]), _pct(e["accuracy"]),
            "" if e["accuracy_drop"] is None else f"{100 * e['accuracy_drop']:+.2f} pt",
        ])
    from edgeship.table import render

    return f"{report['model']}: {report['samples']} evaluation samples\n" + render(head, rows)


def _pct(v: float | None) -> str:
    return "" if v is None else f"{100 * v:.2f}%"
