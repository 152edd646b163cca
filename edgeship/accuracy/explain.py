"""``edgeship explain ARTIFACT``: where an INT8 artifact's error comes from, layer by layer.

Runs the backend's per-layer report (``Exporter.layer_report``) on evaluation samples (the
calibration set when there is none), sorted worst first, and stores it in the eval report
data (edgeship/accuracy/report.py) for the HTML report.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgeship.config import Config
from edgeship.errors import UsageError

DEFAULT_SAMPLES = 32


def explain(cfg: Config, artifact: str, samples: int = DEFAULT_SAMPLES,
            on_event: Callable[[str], None] | None = None) -> dict[str, Any]:
    """The per-layer record of ``artifact`` (a name under build/artifacts/<model>/, or its path)."""
    from edgeship.accuracy.report import layer_record, store_layers
    from edgeship.artifact.selection import find_artifacts
    from edgeship.calibration import evaluation_samples
    from edgeship.exporters.base import get_exporter
    from edgeship.exporting.cpuclass import CpuTarget
    from edgeship.exporting.pipeline import build_job

    say = on_event or (lambda _m: None)
    if samples < 1:
        raise UsageError(f"--samples must be >= 1, got {samples}")
    as_path = "/" in artifact or Path(artifact).is_dir()
    name = Path(artifact).name if as_path else artifact
    refs = {r.name: r for r in find_artifacts(cfg)}
    if name not in refs:
        raise UsageError(f"no artifact '{artifact}' under {cfg.artifacts_dir} (have: {', '.join(refs)}); "
                         "run 'edgeship export' first")
    ref = refs[name]
    if as_path and not _same_directory(Path(artifact), ref.path):
        # the per-layer record is stored under the build's artifact name: explaining another
        # directory would file its layers under an artifact they do not describe
        raise UsageError(f"explain {artifact}: not the build's artifact {name} ({ref.path}); explain works on the "
                         f"artifacts under {cfg.artifacts_dir}: pass its name ('edgeship explain {name}') or that path")
    exporter = get_exporter(ref.target)
    job = build_job(cfg, ref.target)
    bf = ref.manifest.built_for
    if bf:
        import dataclasses

        job = dataclasses.replace(job, cpu_target=CpuTarget(bf["cpu_class"], tuple(bf.get("features") or ()),
                                                            bf.get("known_from", ""), tuple(bf.get("devices") or ())))
    data = evaluation_samples(cfg)[:samples]
    say(f"per-layer error of {name} on {len(data)} samples ...")
    errors = exporter.layer_report(job, ref.precision, ref.path, data)
    record = layer_record(ref.path, errors, len(data), "as exported")
    path = store_layers(cfg, name, record)
    say(f"  written to {path} (layers.{name})")
    return {"artifact": name, **record}


def _same_directory(given: Path, artifact: Path) -> bool:
    """Whether a path the user gave is the artifact's directory (through its link or not)."""
    try:
        return given.exists() and given.resolve(strict=True) == artifact.resolve(strict=True)
    except OSError:   # a link loop, a vanished directory: not the artifact
        return False
