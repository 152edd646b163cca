"""The exporter contract and registry.

``Exporter.export`` is the public entry: it validates the request, runs the backend's
``_export`` inside an atomic temp directory, checks the produced file, and writes
``manifest.json`` last. A backend implements ``_export`` only. Backend modules import
torch/onnx/litert/coremltools inside their methods, never at module level.
"""

from __future__ import annotations

import datetime as _dt
import errno
import importlib.metadata
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from edgeship.accuracy.layers import LayerError
from edgeship.artifact.atomic import atomic_directory
from edgeship.artifact.manifest import Manifest, TensorInfo, file_table
from edgeship.calibration import Sample
from edgeship.config import InputSpec, QuantizationConfig, TargetConfig
from edgeship.errors import ExportError, UsageError
from edgeship.exporting.cpuclass import CpuTarget
from edgeship.exporting.quiet import quiet
from edgeship.registry import Registry
from edgeship.types import Precision, Target

EXPORTERS: Registry[type[Exporter]] = Registry("exporter", "edgeship.exporters")


@dataclass(frozen=True)
class ExportJob:
    """Everything an exporter needs; built once by the pipeline, shared by all targets."""

    model: Any                                  # torch.nn.Module, eval mode, FP32
    model_name: str
    inputs: tuple[InputSpec, ...]
    outputs: tuple[str, ...]
    example_inputs: dict[str, np.ndarray]
    quantization: QuantizationConfig
    target_config: TargetConfig
    config_digest: str = ""
    # Lazily loaded: only int8 exports pay for reading the calibration set.
    calibration: Callable[[], Sequence[Sample]] | None = None
    calibration_ref: str | None = None
    # the CPU the artifact is built for (export --for); None: this host
    cpu_target: CpuTarget | None = None
    # which FP32 model this is: {"kind": "original"} or the compressed model's record
    source: dict[str, Any] | None = None
    source_note: str | None = None
    # accuracy-aware INT8 (edgeship/accuracy/layers.py): LayerError.layer ids kept in float
    keep_float: tuple[str, ...] = ()
    # ... and ids whose activations are quantized to 16 bits (A16W8), where the backend has it
    int16_layers: tuple[str, ...] = ()
    # the accuracy-aware search judges this build (edgeship/accuracy/search.py): the export-time
    # cosine bound is recorded, not raised, and the pipeline enforces it on the build that ships
    defer_bound: bool = False

    def calibration_samples(self) -> Sequence[Sample]:
        if self.calibration is None:
            raise UsageError(
                f"model '{self.model_name}': int8 export needs calibration data; set [data] calibration "
                "in edgeship.toml (\"pkg.module:fn\" or a directory of .npz files)"
            )
        return self.calibration()

    def example_args(self) -> tuple[Any, ...]:
        import torch

        return tuple(torch.from_numpy(np.ascontiguousarray(self.example_inputs[s.name])) for s in self.inputs)


@dataclass
class ExportResult:
    """What a backend reports back about the file it wrote."""

    model_file: str                                   # relative to the artifact directory
    recipe: dict[str, Any] = field(default_factory=dict)
    calibration: dict[str, Any] | None = None          # {"method", "samples", "source"}
    io_quantization: dict[str, dict[str, float]] = field(default_factory=dict)
    io_dtypes: dict[str, str] = field(default_factory=dict)   # tensor name -> dtype if not the spec's
    output_shapes: dict[str, list[int]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    built_for: dict[str, Any] | None = None            # manifest built_for (CPU-class-specific recipes)


# OS errors that mean the artifact's directory cannot take the file (full, read-only, denied,
# a name too long): no conversion failed, so they are bad input naming the path, not an
# export failure recorded as the artifact's (which said "No space left" without a path).
_DISK_HINT = {errno.ENOSPC: "free some disk space", errno.EDQUOT: "free some disk quota",
              errno.EROFS: "the file system is read-only; choose another build directory (-o)",
              errno.EACCES: "check its permissions", errno.EPERM: "check its permissions",
              errno.ENAMETOOLONG: "choose a shorter build directory (-o)"}


def _disk_error(exc: BaseException) -> OSError | None:
    """The OSError of ``_DISK_HINT`` in ``exc``'s chain (a converter wraps it), or None."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, OSError) and cur.errno in _DISK_HINT:
            return cur
        cur = cur.__cause__ or cur.__context__
    return None


def _disk_path(err: OSError, tmp: Path, out_dir: Path) -> Path:
    """The path to name: the artifact's (not our temp directory's), or the foreign one the error names."""
    name = err.filename2 or err.filename
    if name is None:
        return out_dir
    path = Path(os.fsdecode(name))
    return out_dir if path == tmp or tmp in path.parents else path


class Exporter(ABC):
    target: ClassVar[Target]
    runtime: ClassVar[str]                       # runtime name in edgeship.runtimes
    precisions: ClassVar[tuple[Precision, ...]]
    version_modules: ClassVar[tuple[str, ...]] = ("torch",)
    # precisions whose recipe depends on the CPU class: export --for builds one per class
    class_specific: ClassVar[tuple[Precision, ...]] = ()

    def export(self, job: ExportJob, precision: Precision, out_dir: Path) -> Manifest:
        """Export ``job`` at ``precision`` into ``out_dir`` atomically; return its manifest."""
        precision = Precision(precision)
        if precision not in self.precisions:
            have = ", ".join(p.value for p in self.precisions)
            raise UsageError(f"target '{self.target}' has no precision '{precision}'; it has: {have}")
        with atomic_directory(out_dir) as tmp:
            try:
                with quiet():
                    res = self._export(job, precision, tmp)
            except UsageError:
                raise
            except Exception as exc:
                full = _disk_error(exc)
                if full is not None:   # the disk, not the conversion: the user's to fix, exit 2
                    where = _disk_path(full, tmp, out_dir)
                    raise UsageError(f"{where}: cannot write the artifact ({full.strerror or full}); "
                                     f"{_DISK_HINT.get(full.errno, 'choose another build directory (-o)')}") from exc
                if isinstance(exc, ExportError):
                    raise
                raise ExportError(
                    f"{job.model_name}: {self.target}-{precision} export failed: {type(exc).__name__}: {exc}"
                ) from exc
            model_path = tmp / res.model_file
            if not model_path.exists():
                raise ExportError(f"{job.model_name}: {self.target}-{precision}: backend wrote no {res.model_file}")
            manifest = Manifest(
                model=job.model_name,
                target=self.target.value,
                precision=precision.value,
                runtime=self.runtime,
                model_file=res.model_file,
                inputs=[
                    TensorInfo(s.name, list(s.shape), res.io_dtypes.get(s.name, s.dtype), res.io_quantization.get(s.name))
                    for s in job.inputs
                ],
                outputs=[
                    TensorInfo(n, res.output_shapes.get(n, []), res.io_dtypes.get(n, "float32"), res.io_quantization.get(n))
                    for n in job.outputs
                ],
                files=file_table(tmp),
                recipe={**res.recipe, **({"source": job.source} if job.source else {})},
                calibration=res.calibration,
                config_digest=job.config_digest,
                versions=self.versions(),
                created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                notes=res.notes + ([job.source_note] if job.source_note else []),
                built_for=res.built_for,
            )
            manifest.write(tmp)
        return manifest

    def layer_report(self, job: ExportJob, precision: Precision, artifact_dir: Path,
                     samples: Sequence[Sample]) -> list[LayerError]:
        """Per-layer error of the quantized artifact in ``artifact_dir`` (edgeship/accuracy/layers.py)."""
        raise UsageError(f"target '{self.target}' has no per-layer error report for precision '{precision}'")

    def calibration_variants(self, job: ExportJob, precision: Precision) -> tuple[list[tuple[str, ExportJob]], list[str]]:
        """The search's first stage: ``job`` with the other calibration methods this backend has at
        ``precision``, as (name, job); and one line per method it cannot try, saying why."""
        return [], [f"{self.target}-{precision}: no calibration methods to try"]

    def int16_activations(self, precision: Precision) -> str | None:
        """None if ``job.int16_layers`` is honoured at ``precision`` (A16W8); else why not."""
        return f"{self.target}-{precision} has no 16-bit activations"

    @abstractmethod
    def _export(self, job: ExportJob, precision: Precision, workdir: Path) -> ExportResult:
        """Convert ``job.model`` at ``precision``, writing files into ``workdir``."""

    @classmethod
    def versions(cls) -> dict[str, str]:
        out = {"edgeship": _version("edgeship"), "numpy": np.__version__}
        for mod in cls.version_modules:
            out[mod] = _version(mod)
        return out


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def get_exporter(target: Target | str) -> Exporter:
    return EXPORTERS.get(str(target))()


# Export-time sanity bounds: an artifact whose outputs on the example/calibration inputs are
# this far from the FP32 reference is broken, and its export fails (eval measures the rest).
MIN_EXPORT_COSINE = {
    Precision.FP32: 0.9999,
    Precision.FP16: 0.995,
    Precision.INT8: 0.90,
    Precision.INT8_DYNAMIC: 0.95,
    Precision.INT8_WEIGHT: 0.97,
    Precision.INT4_WEIGHT: 0.90,
}


def check_outputs(
    job: ExportJob, precision: Precision, target: Target,
    reference: Sequence[Sequence[np.ndarray]], candidate: Sequence[Sequence[np.ndarray]],
) -> dict[str, float]:
    """Compare an exported model's outputs to the reference; ExportError if they disagree.

    Returns the fidelity numbers so the exporter can record them in the recipe.
    """
    from edgeship.metrics import fidelity

    for sample in candidate:
        for name, arr in zip(job.outputs, sample):
            if not np.isfinite(np.asarray(arr, np.float64)).all():
                raise ExportError(
                    f"{job.model_name}: {target}-{precision}: output '{name}' has inf/NaN "
                    "(overflow in reduced precision); keep this layer in fp32 or rescale the model"
                )
    fid = fidelity(reference, candidate)
    bound = MIN_EXPORT_COSINE[precision]
    if job.defer_bound:
        # the search starts from this build; enforce_bound judges the one that ships
        return {**fid, "bound": bound, "bound_deferred": True}
    if fid["cosine_min"] < bound:
        raise ExportError(
            f"{job.model_name}: {target}-{precision}: outputs do not match the PyTorch reference "
            f"(min cosine {fid['cosine_min']:.5f} < {bound}); the artifact was not written"
        )
    return fid


def enforce_bound(model_name: str, manifest: Manifest) -> None:
    """The export-time sanity bound on the build that ships, where the search deferred it
    (``ExportJob.defer_bound``): ExportError if its recorded min cosine is below the bound."""
    fid = manifest.recipe.get("fidelity_check") or {}
    if not fid.get("bound_deferred"):
        return
    bound = MIN_EXPORT_COSINE[Precision(manifest.precision)]
    if fid["cosine_min"] is None or not fid["cosine_min"] >= bound:
        raise ExportError(
            f"{model_name}: {manifest.target}-{manifest.precision}: outputs do not match the PyTorch reference "
            f"(min cosine {fid['cosine_min']:.5f} < {bound}) after the accuracy-aware search; the artifact was not written"
        )
