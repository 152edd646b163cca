"""export: PyTorch model -> one verified artifact per target and precision."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from functools import lru_cache

from edgeship.accuracy.search import accuracy_aware, search_budget
from edgeship.artifact.manifest import Manifest
from edgeship.calibration import DataSource, Sample, load_samples
from edgeship.compress.store import export_source
from edgeship.config import Config
from edgeship.errors import ConfigError, ExportError, MissingDependency, UsageError, interrupted, one_line
from edgeship.exporters.base import EXPORTERS, ExportJob, get_exporter
from edgeship.exporting.cpuclass import host_target
from edgeship.exporting.failures import ExportFailure, ExportIncomplete, ExportSummary, clear_failure, record_failure
from edgeship.exporting.for_device import artifact_name, export_targets
from edgeship.model.reference import load_reference, run_reference, synthetic_inputs
from edgeship.types import Precision, Target


def plan(cfg: Config, targets: tuple[Target, ...] | None, precisions: tuple[Precision, ...] | None) -> list[tuple[Target, Precision]]:
    """The (target, precision) pairs to export; validated before any model is loaded."""

    chosen = targets or tuple(t for t in Target if t in cfg.targets) or tuple(Target)
    pairs: list[tuple[Target, Precision]] = []
    for t in chosen:
        exporter = EXPORTERS.get(t.value)
        configured = cfg.target_config(t).precisions or tuple(p for p in exporter.precisions if not p.opt_in)
        for p in configured:
            if p not in exporter.precisions:
                have = ", ".join(x.value for x in exporter.precisions)
                raise ConfigError(f"key 'targets.{t}.precisions': target '{t}' has no precision '{p}'; it has: {have}")
        wanted = precisions or configured
        for p in wanted:
            if p not in exporter.precisions:
                have = ", ".join(x.value for x in exporter.precisions)
                raise UsageError(f"target '{t}' has no precision '{p}'; it has: {have}")
            if precisions is None or p in precisions:
                pairs.append((t, p))
    if not pairs:
        raise UsageError("nothing to export for that --target/--precision selection")
    return pairs


def calibration_loader(cfg: Config) -> Callable[[], list[Sample]] | None:
    if cfg.data.calibration is None:
        return None
    source = DataSource(cfg.data.calibration, "data.calibration", cfg.root)

    @lru_cache(maxsize=1)
    def load() -> list[Sample]:
        return load_samples(source, cfg.model.inputs, cfg.data.calibration_samples, cfg.data.label_key)

    return load


def build_job(cfg: Config, target: Target, source: str | None = None):  # -> ExportJob

    # --from compressed|original (None: compressed when this config has [compress] steps)
    model, origin, origin_note = export_source(cfg, source)
    model = model if model is not None else load_reference(cfg)
    calib = calibration_loader(cfg)
    example = calib()[0].inputs if calib is not None else synthetic_inputs(cfg.model.inputs)
    outs = run_reference(model, example, cfg.model.inputs)
    if len(outs) != len(cfg.model.outputs):
        raise ConfigError(
            f"key 'model.outputs': the model returns {len(outs)} output(s) but {len(cfg.model.outputs)} "
            f"name(s) are configured ({list(cfg.model.outputs)})"
        )
    return ExportJob(
        model=model,
        model_name=cfg.model.name,
        inputs=cfg.model.inputs,
        outputs=cfg.model.outputs,
        example_inputs=example,
        quantization=cfg.quantization,
        target_config=cfg.target_config(target),
        config_digest=cfg.digest,
        calibration=calib,
        calibration_ref=cfg.data.calibration,
        source=origin,
        source_note=origin_note,
    )


def export(
    cfg: Config,
    targets: tuple[Target, ...] | None = None,
    precisions: tuple[Precision, ...] | None = None,
    on_event: Callable[[str], None] | None = None,
    for_devices: tuple[str, ...] | None = None,
    source: str | None = None,
) -> list[Manifest]:
    """Export every selected (target, precision); the manifests of all, or ExportIncomplete.

    Every artifact is attempted (see ``export_all``); if any failed, raises ExportIncomplete
    (an ExportError, exit code 1) carrying the built manifests and the failures.
    """

    summary = export_all(cfg, targets, precisions, on_event, for_devices, source)
    if summary.failures:
        raise ExportIncomplete(summary.built, summary.failures)
    return summary.built


def export_all(
    cfg: Config,
    targets: tuple[Target, ...] | None = None,
    precisions: tuple[Precision, ...] | None = None,
    on_event: Callable[[str], None] | None = None,
    for_devices: tuple[str, ...] | None = None,
    source: str | None = None,
):  # -> ExportSummary
    """Attempt every selected (target, precision); return what was built and what failed.

    Bad input (config, selection, model source, calibration data, devices) raises before any
    artifact is attempted. A conversion that fails (ExportError, or a missing optional
    dependency of one target) is recorded (edgeship.exporting.failures) and the next artifact is
    attempted. Class-specific precisions (ONNX INT8) are built once per CPU class of
    ``for_devices`` (default: the devices the budgets name, else this host); see
    edgeship.exporting.for_device. The failed artifact leaves no directory, only its failure record.
    """

    pairs = plan(cfg, targets, precisions)
    if cfg.data.calibration is None and any(p is Precision.INT8 for _, p in pairs):
        # a config problem: said before any work, not once per int8 artifact
        raise ConfigError(f"{cfg.path or 'edgeship.toml'}: int8 export needs calibration data; set [data] calibration "
                          "(\"pkg.module:fn\" or a directory of .npz files) or leave int8 out of --precision")
    say = on_event or (lambda _msg: None)
    # device classes matter to class-specific precisions only; bad/unreachable devices fail before any work
    needed = for_devices or any(p in EXPORTERS.get(t.value).class_specific for t, p in pairs)
    cpu_targets = export_targets(cfg, for_devices) if needed else [host_target()]
    default = cpu_targets[0]
    entries: list[tuple[str, Manifest | ExportFailure]] = []
    jobs: dict[Target, object] = {}
    base_job = build_job(cfg, pairs[0][0], source)
    if base_job.source_note:
        say(f"  {base_job.source_note}")
    for t, p in pairs:
        if t not in jobs:
            jobs[t] = dataclasses.replace(base_job, target_config=cfg.target_config(t))
        per_class = p in EXPORTERS.get(t.value).class_specific
        for cpu in cpu_targets if per_class else [default]:
            name = artifact_name(t.value, p.value, cpu.cpu_class if per_class else None, default.cpu_class)
            out_dir = cfg.artifacts_dir / name
            say(f"export {cfg.model.name} {name}" + (f" for {cpu.cpu_class} ({', '.join(cpu.devices)})" if per_class else "") + " ...")
            if p is Precision.INT8 and base_job.calibration is not None:
                say(f"  calibrating on {len(base_job.calibration())} samples from {cfg.data.calibration}")
            job = dataclasses.replace(jobs[t], cpu_target=cpu)  # type: ignore[type-var]
            # with an accuracy budget the search judges the build: plain INT8 below the export
            # bound is its starting point, and the bound judges the build that ships
            searched = search_budget(cfg, t.value, p, cpu.devices) is not None
            job = dataclasses.replace(job, defer_bound=searched)  # type: ignore[type-var]
            try:
                started = time.perf_counter()
                m = get_exporter(t).export(job, p, out_dir)
                m = accuracy_aware(cfg, get_exporter(t), job, p, out_dir, m, say, time.perf_counter() - started)
            except (ExportError, MissingDependency) as exc:
                if interrupted():   # Ctrl-C inside a backend's import, reported as its ImportError
                    raise KeyboardInterrupt from exc
                failure = ExportFailure(name, t.value, p.value, _reason(str(exc), cfg.model.name, f"{t}-{p}"))
                record_failure(cfg, failure)
                say(f"  FAILED {name}: {failure.reason}")
                entries.append((name, failure))
                continue
            clear_failure(cfg, name)
            say(f"  wrote {out_dir} ({m.size_bytes / 1024:.1f} KiB)")
            entries.append((name, m))
    return ExportSummary(tuple(entries))


def _reason(text: str, model: str, name: str) -> str:
    """The error on one line, without the model/artifact prefix the failure line already names."""
    line = " ".join(one_line(text).split())
    for prefix in (f"{model}: ", f"{name}: ", f"{name} "):
        line = line.removeprefix(prefix)
    return line
