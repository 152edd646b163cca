"""Scoring an artifact's outputs against the FP32 reference on the evaluation set, and the
provenance every eval entry carries (the host's or the device's CPU, the artifact digest)."""

from __future__ import annotations

import datetime as _dt
from typing import Any

import numpy as np

from edgeship.artifact.atomic import sha256_file
from edgeship.artifact.manifest import Manifest
from edgeship.artifact.selection import ArtifactRef
from edgeship.calibration import Sample
from edgeship.config import Config
from edgeship.errors import ArtifactError
from edgeship.measure.output_kinds import output_kinds
from edgeship.metrics import accuracy, closeness, output_scores
from edgeship.model.reference import load_reference, run_reference
from edgeship.types import Evidence, OutputKind

# fidelity figures an entry also records against the original FP32 model (``<key>_original``)
ORIGINAL_KEYS = ("cosine_mean", "cosine_min", "top1_agreement", "retrieval_agreement")


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
        scores, per = self._fidelity(ref_outs, outs)
        scores["outputs"] = per
        # relative_to = "original" budgets judge these: the same figures against the ORIGINAL FP32
        # model, so a pruned model that agrees with its compressed self but not with the model it
        # replaces cannot pass on the compressed model's figures (identical when not compressed)
        vs_original = scores if source == "original" else self._fidelity(self.outputs, outs)[0]
        for key in ORIGINAL_KEYS:
            scores[f"{key}_original"] = vs_original[key]
        scored = self.labels is not None and self.accuracy_index is not None
        acc = accuracy(outs, self.labels, self.accuracy_index or 0) if scored else None
        scores["accuracy"] = acc
        scores["accuracy_drop"] = (ref_acc - acc) if (acc is not None and ref_acc is not None) else None
        scores["accuracy_drop_original"] = (self.accuracy - acc) if (acc is not None and self.accuracy is not None) else None
        scores["source"] = source
        return scores

    def _fidelity(self, ref_outs: list[list[np.ndarray]],
                  outs: list[list[np.ndarray]]) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
        """(closeness over all outputs plus the worst output's figure per kind metric, per-output scores)."""
        scores: dict[str, Any] = dict(closeness(ref_outs, outs))   # over all outputs, concatenated
        per = {o.name: {"kind": o.kind.value, "kind_from": o.kind_from, **output_scores(ref_outs, outs, i, o.kind.value)}
               for i, o in enumerate(self.kinds)}
        # one figure per metric for the entry (and the gate): the worst output of the kind it applies to
        for key in ("top1_agreement", "retrieval_agreement", "rank_correlation"):
            vals = [p[key] for p in per.values() if p[key] is not None]
            scores[key] = min(vals) if vals else None
        return scores, per


def new_entry(cfg: Config, ref: ArtifactRef, device: str, samples: int) -> dict[str, Any]:
    """An entry with its provenance; metrics are None until ``entry.update(scores)``."""
    dev = cfg.devices.get(device)
    kind = Evidence.EMULATED if dev is not None and dev.kind == "emulated" else Evidence.DEVICE
    return {
        "device": device, "artifact": ref.name, "target": ref.target.value, "precision": ref.precision.value,
        "artifact_digest": sha256_file(ref.path / "manifest.json"), "config_digest": cfg.digest,
        "evidence": kind.value,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "status": "ok", "skip_reason": None, "cosine_min": None, "cosine_mean": None, "max_abs_err": None,
        "snr_db": None, "top1_agreement": None, "retrieval_agreement": None, "rank_correlation": None,
        "accuracy": None, "accuracy_drop": None, "outputs": {}, "samples": samples, "cpu": {},
        "size_bytes": ref.manifest.size_bytes,
    }
