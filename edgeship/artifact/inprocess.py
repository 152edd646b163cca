"""Run an artifact in this process through its runtime (runtimes/): eval on the host, the
accuracy-aware search and compare all use it."""

from __future__ import annotations

import numpy as np

from edgeship.artifact.selection import ArtifactRef
from edgeship.errors import ArtifactError, RuntimeFailure


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
