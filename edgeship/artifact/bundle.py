"""The bundle pushed to a device: artifact + inputs.npz + the standalone runner package.

The runner package is ``runtimes/`` copied under the name ``edgeship_runner`` with only
base/memory/runner and the one runtime module the artifact needs, so nothing of edgeship is
installed on the board and no module can shadow a real one (our ``onnxruntime.py`` lives at
``edgeship_runner.onnxruntime``).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from edgeship.config import Config
from edgeship.artifact.selection import ArtifactRef

RUNNER_PACKAGE = "edgeship_runner"
RUNNER_FILES = ("__init__.py", "base.py", "memory.py", "runner.py", "cpuinfo.py")


def runtimes_dir() -> Path:
    import edgeship.runtimes

    return Path(edgeship.runtimes.__file__).parent


def write_runner_package(dest: Path, runtime: str | None) -> Path:
    """Copy the standalone runner (+ one runtime module) to ``dest/edgeship_runner``.

    ``runtime=None`` copies every runtime module (for ``runner --info`` on a device).
    """
    pkg = dest / RUNNER_PACKAGE
    pkg.mkdir(parents=True, exist_ok=True)
    src = runtimes_dir()
    if runtime is None:
        modules = tuple(p.name for p in sorted(src.glob("*.py")) if p.name not in RUNNER_FILES)
    else:
        modules = (f"{runtime}.py",)
        if not (src / modules[0]).is_file():
            from edgeship.errors import ArtifactError

            raise ArtifactError(f"runtime '{runtime}' has no module runtimes/{runtime}.py in this edgeship")
    for name in RUNNER_FILES + modules:
        shutil.copy2(src / name, pkg / name)
    return pkg


def profiling_inputs(cfg: Config) -> dict[str, np.ndarray]:
    """First evaluation sample, else first calibration sample, else synthetic inputs."""
    from edgeship.calibration import DataSource, load_samples
    from edgeship.model.reference import synthetic_inputs

    for ref, key in ((cfg.data.evaluation, "data.evaluation"), (cfg.data.calibration, "data.calibration")):
        if ref is not None:
            return load_samples(DataSource(ref, key, cfg.root), cfg.model.inputs, 1, cfg.data.label_key)[0].inputs
    return synthetic_inputs(cfg.model.inputs)


def build_bundle(dest: Path, ref: ArtifactRef, inputs: dict[str, np.ndarray]) -> Path:
    """Lay out ``dest/{artifact/, inputs.npz, edgeship_runner/}``; returns ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copytree(ref.path, dest / "artifact", dirs_exist_ok=True)
    np.savez(dest / "inputs.npz", **inputs)  # type: ignore[arg-type]  # numpy stubs: **arrays vs allow_pickle
    write_runner_package(dest, ref.manifest.runtime)
    return dest
