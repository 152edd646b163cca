"""The standalone runner package: ``runtimes/`` copied under the name ``edgeship_runner``.

Only base/memory/runner/cpuinfo and the one runtime module the artifact needs are copied, so
nothing of edgeship is installed on the board and no module can shadow a real one (our
``onnxruntime.py`` lives at ``edgeship_runner.onnxruntime``). The manifest check uses the same
file list to know which runtime names exist.
"""

from __future__ import annotations

import shutil
from pathlib import Path

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
