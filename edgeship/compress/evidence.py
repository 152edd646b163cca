"""eval's view of compression: each artifact against the FP32 model it was exported from.

An artifact exported from build/compressed/<model> is compared (fidelity, accuracy drop) with
the compressed FP32 model, so conversion error is not confused with compression error; its
drop against the ORIGINAL FP32 model is recorded too (``accuracy_drop_original``), which a
budget with ``relative_to = "original"`` gates. The compressed model must still be the one
the artifact was exported from (same manifest sha256), else the evidence would be stale.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgeship.errors import ArtifactError


class SourceReferences:
    def __init__(self, cfg: Any, feeds: list[dict[str, np.ndarray]], labels: Sequence[np.ndarray] | None,
                 original: list[list[np.ndarray]], original_accuracy: float | None,
                 accuracy_index: int | None = 0) -> None:
        # accuracy_index: the classification output accuracy is measured on (None: no such output)
        self.cfg, self.feeds, self.labels, self.accuracy_index = cfg, feeds, labels, accuracy_index
        self.original, self.original_accuracy = original, original_accuracy
        self._cache: dict[str, tuple[list[list[np.ndarray]], float | None]] = {}

    def for_manifest(self, manifest: Any) -> tuple[list[list[np.ndarray]], float | None, str]:
        """(reference outputs, reference accuracy, source kind) for one artifact."""
        src = (manifest.recipe or {}).get("source") or {}
        if src.get("kind") != "compressed":
            return self.original, self.original_accuracy, "original"
        digest = src.get("manifest_sha256", "")
        if digest not in self._cache:
            self._cache[digest] = self._load(Path(src["path"]), digest, manifest)
        outs, acc = self._cache[digest]
        return outs, acc, "compressed"

    def _load(self, directory: Path, digest: str, manifest: Any) -> tuple[list[list[np.ndarray]], float | None]:
        from edgeship.metrics import accuracy
        from edgeship.model.reference import run_reference

        model = source_model(self.cfg, manifest)
        outs = [run_reference(model, f, self.cfg.model.inputs) for f in self.feeds]
        scored = self.labels and self.accuracy_index is not None
        return outs, (accuracy(outs, self.labels, self.accuracy_index) if scored else None)


def source_key(manifest: Any) -> str:
    """"original", or "compressed:<sha256>" naming the compressed model an artifact came from."""
    src = (manifest.recipe or {}).get("source") or {} if manifest is not None else {}
    return f"compressed:{src.get('manifest_sha256', '')}" if src.get("kind") == "compressed" else "original"


def source_model(cfg: Any, manifest: Any) -> Any:
    """The compressed FP32 model an artifact was exported from, verified to be the same one
    (ArtifactError when build/compressed changed since); the caller handles "original"."""
    from edgeship.compress.store import load_verified

    src = manifest.recipe["source"]
    directory = Path(src["path"])
    model, _, now = load_verified(cfg, directory)
    if now != src.get("manifest_sha256", ""):
        raise ArtifactError(
            f"{manifest.target}-{manifest.precision} was exported from a compressed model that {directory} "
            "no longer holds (re-run 'edgeship compress' changed it); re-run 'edgeship export'"
        )
    return model
