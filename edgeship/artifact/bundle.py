"""The bundle pushed to a device: artifact + inputs.npz + the standalone runner package.

The runner package is written by edgeship/artifact/runner_files.py; the inputs come from
edgeship/measure/inputs.py.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from edgeship.artifact.runner_files import write_runner_package
from edgeship.artifact.selection import ArtifactRef


def build_bundle(dest: Path, ref: ArtifactRef, inputs: dict[str, np.ndarray]) -> Path:
    """Lay out ``dest/{artifact/, inputs.npz, edgeship_runner/}``; returns ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copytree(ref.path, dest / "artifact", dirs_exist_ok=True)
    np.savez(dest / "inputs.npz", **inputs)  # type: ignore[arg-type]  # numpy stubs: **arrays vs allow_pickle
    write_runner_package(dest, ref.manifest.runtime)
    return dest
