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


def artifact_inputs(ref: ArtifactRef, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``inputs`` in the integer dtypes the artifact declares for them.

    A converter may take integer inputs narrower than the config's (CoreML has no int64: token
    ids become int32, recorded in the manifest's inputs). The runner checks dtypes against the
    manifest, so the bundle carries what the artifact takes; only when every value fits, else
    one line naming the input (never a silent wrap-around). Float inputs are left as they are.
    """
    from edgeship.errors import InputDataError

    out = dict(inputs)
    for spec in ref.manifest.inputs:
        arr = out.get(spec.name)
        want = np.dtype(spec.dtype)
        # a quantized input takes floats that the runner quantizes with the tensor's own parameters
        if arr is None or arr.dtype == want or arr.dtype.kind not in "iu" or want.kind not in "iu" or spec.quantization:
            continue
        info = np.iinfo(want)
        if arr.size and (int(arr.min()) < info.min or int(arr.max()) > info.max):
            raise InputDataError(f"artifact {ref.name}: input '{spec.name}' holds values in [{int(arr.min())}, "
                                 f"{int(arr.max())}], outside {want} which the artifact takes; fix the input data")
        out[spec.name] = arr.astype(want)
    return out


def build_bundle(dest: Path, ref: ArtifactRef, inputs: dict[str, np.ndarray]) -> Path:
    """Lay out ``dest/{artifact/, inputs.npz, edgeship_runner/}``; returns ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copytree(ref.path, dest / "artifact", dirs_exist_ok=True)
    feeds = artifact_inputs(ref, inputs)
    np.savez(dest / "inputs.npz", **feeds)  # type: ignore[arg-type]  # numpy stubs: **arrays vs allow_pickle
    write_runner_package(dest, ref.manifest.runtime)
    return dest
