"""The Python API: the same verbs as the CLI, returning typed results.

Every function takes a Config (``edgeship.load_config(...)``) or a path to edgeship.toml, and
targets/precisions as enums, strings ("tflite", "onnx,tflite", "all") or sequences. The CLI
commands are thin wrappers over these.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from edgeship.artifact.manifest import Manifest
from edgeship.artifact.selection import parse_precisions, parse_targets
from edgeship.config import Config, load_config

Selection = str | Iterable[str] | None
Events = Callable[[str], None] | None


def _cfg(config: Config | str | Path | None) -> Config:
    return config if isinstance(config, Config) else load_config(config)


def export(config: Config | str | Path | None = None, target: Selection = "all", precision: Selection = "all",
           on_event: Events = None, for_devices: Sequence[str] | None = None,
           source: str | None = None) -> list[Manifest]:
    """Export the model; returns the manifest of every artifact written.

    Every requested artifact is attempted. If any failed to convert, raises
    ``edgeship.ExportIncomplete`` (an ExportError) after the others were built: ``.built`` holds
    their manifests, ``.failures`` one ``ExportFailure`` (name, target, precision, reason) per
    failed artifact. Bad input (config, data, selection) raises a UsageError before any work.

    ``for_devices``: build class-specific INT8 for these devices' CPU classes (CLI ``--for``).
    ``source``: "compressed" or "original" (CLI ``--from``).
    """
    from edgeship.exporting.pipeline import export as _export

    return _export(_cfg(config), parse_targets(target), parse_precisions(precision), on_event,
                   tuple(for_devices) if for_devices else None, source)


def compress(config: Config | str | Path | None = None, on_event: Events = None) -> dict[str, Any]:
    """Run the [compress] steps; returns the compressed manifest (build/compressed/<model>/)."""
    from edgeship.compress.stage import compress as _compress

    return _compress(_cfg(config), on_event)


def evaluate(config: Config | str | Path | None = None, target: Selection = "all", precision: Selection = "all",
             on_event: Events = None, device: str | None = None, chunk: int = 64,
             cluster: str | None = None) -> dict[str, Any]:
    """Fidelity/accuracy of every artifact vs the FP32 reference, here or on ``device`` (merged into eval.json).

    With ``cluster`` (or ``[cluster] address``) ``device`` is reached through the Ray node that
    owns it (edgeship/cluster/); without one Ray is never imported.
    """
    from edgeship.measure.evaluate import evaluate as _evaluate

    cfg = _cfg(config)
    address = cluster or cfg.cluster.address
    produce = None
    if device is not None and address:
        from edgeship.cluster.eval import evaluate_on_cluster

        def produce(cfg: Config, device: str, refs: list[Any], scorer: Any, chunk: int,
                    say: Callable[[str], None]) -> Any:
            return evaluate_on_cluster(cfg, address, device, refs, scorer, chunk, say)

    return _evaluate(cfg, parse_targets(target), parse_precisions(precision), on_event, device, chunk, produce)


def profile(config: Config | str | Path | None = None, device: str = "local", target: Selection = "all",
            precision: Selection = "all", on_event: Events = None, min_runs: int | None = None,
            min_seconds: float | None = None, threads: int | None = None, rounds: int | None = None,
            cluster: str | None = None) -> list[dict[str, Any]]:
    """Latency/memory of every artifact on ``device`` (results also written to build/results/).

    With ``cluster`` (or ``[cluster] address``) the devices (``device`` may then name several,
    comma-separated) are measured on the Ray nodes that own them (edgeship/cluster/): the one
    dispatch point, so without a cluster Ray is never imported.
    """
    from edgeship.measure.profile import profile as _profile
    from edgeship.measure.profile import record_history

    cfg = _cfg(config)
    targets, precisions = parse_targets(target), parse_precisions(precision)
    address = cluster or cfg.cluster.address
    if address:
        from edgeship.cluster.submit import profile_on_cluster

        results = profile_on_cluster(cfg, address, device.split(","), targets, precisions, on_event,
                                     min_runs, min_seconds, threads, rounds)
        record_history(cfg, results)
        return results
    return _profile(cfg, device, targets, precisions, on_event, min_runs, min_seconds, threads, rounds)


def gate(config: Config | str | Path | None = None, device: str | None = None, baseline: str | Path | None = None,
         force: bool = False, write: bool = True, on_event: Events = None) -> Any:
    """Judge results against [[budgets]]; returns a GateReport (``.passed``, ``.exit_code``, ``.checks``)."""
    from edgeship.gating.judge import gate as _gate
    from edgeship.gating.judge import load_report
    from edgeship.reports import write_reports

    cfg = _cfg(config)
    result = _gate(cfg, device, None, load_report(Path(baseline)) if baseline else None, force, None, on_event)
    if write:
        write_reports(result.report, cfg.build / "reports")
    return result


def compare(config: Config | str | Path | None = None, target: Selection = "all", precision: Selection = "all",
            samples: int = 64) -> dict[str, Any]:
    """Agreement matrix between every artifact and the reference on the same inputs."""
    from edgeship.measure.compare import compare as _compare

    return _compare(_cfg(config), parse_targets(target), parse_precisions(precision), samples)
