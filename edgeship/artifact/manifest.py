"""manifest.json: what an artifact is, how it was made, and the checksums that prove it.

Written last into an artifact directory (inside the atomic temp dir), read by eval, profile,
gate and by the standalone runner on a device.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from edgeship.artifact.atomic import sha256_file, tree_files, write_json_atomic
from edgeship.errors import ArtifactError
from edgeship.untrusted import loads

SCHEMA = "edgeship.manifest/1"
MANIFEST = "manifest.json"
FORWARD_COMPATIBLE = ("built_for",)
_RUNTIME_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: list[int]
    dtype: str
    # For int8/uint8 I/O of full-integer models: {"scale": float, "zero_point": int}
    quantization: dict[str, float] | None = None


@dataclass(frozen=True)
class Manifest:
    model: str
    target: str
    precision: str
    runtime: str
    model_file: str
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    files: dict[str, dict[str, Any]]      # relative path -> {"sha256", "size"}
    recipe: dict[str, Any]                # quantization recipe and recorded decisions
    calibration: dict[str, Any] | None
    config_digest: str
    versions: dict[str, str]
    created: str
    notes: list[str] = field(default_factory=list)
    schema: str = SCHEMA
    # INT8 built for a CPU class: {"cpu_class", "features", "recipe", "why", "candidates"}
    built_for: dict[str, Any] | None = None

    @property
    def size_bytes(self) -> int:
        return sum(int(f["size"]) for f in self.files.values())

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["size_bytes"] = self.size_bytes
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Manifest:
        d = dict(d)
        d.pop("size_bytes", None)
        known = {f.name for f in fields(cls)}
        for key in FORWARD_COMPATIBLE:   # optional fields a newer edgeship may write
            if key not in known:
                d.pop(key, None)
        d["inputs"] = [TensorInfo(**t) for t in d["inputs"]]
        d["outputs"] = [TensorInfo(**t) for t in d["outputs"]]
        return cls(**d)

    def write(self, directory: Path) -> None:
        write_json_atomic(Path(directory) / MANIFEST, self.to_dict())


def artifact_digest(directory: Path) -> str:
    """sha256 of the artifact's manifest.json bytes (contract 1)."""
    return hashlib.sha256((Path(directory) / MANIFEST).read_bytes()).hexdigest()


def file_table(directory: Path) -> dict[str, dict[str, Any]]:
    directory = Path(directory)
    return {
        str(p.relative_to(directory)): {"sha256": sha256_file(p), "size": p.stat().st_size}
        for p in tree_files(directory)
        if p.name != MANIFEST
    }


def read_manifest(directory: Path, verify: bool = True, expect_model: str | None = None) -> Manifest:
    """Load an artifact's manifest and check it as an integrity boundary.

    Always: the manifest's fields have their types, every ``files`` path stays inside the
    artifact directory, ``model_file`` is covered by ``files``, ``runtime`` is a known runtime
    and (with ``expect_model``) ``model`` is the configured model. With ``verify`` also every
    file's size and sha256. Any violation is an ArtifactError naming the manifest and field.
    """
    directory = Path(directory)
    mpath = directory / MANIFEST
    if not mpath.is_file():
        raise ArtifactError(f"{directory}: no {MANIFEST}; not an edgeship artifact (re-run 'edgeship export')")
    try:
        m = Manifest.from_dict(loads(mpath.read_bytes()))
    except (ValueError, TypeError, KeyError, AttributeError) as exc:   # UntrustedJSONError is a ValueError
        raise ArtifactError(f"{mpath}: corrupt manifest ({exc}); re-run 'edgeship export'") from None
    if m.schema != SCHEMA:
        raise ArtifactError(f"{mpath}: manifest schema {m.schema!r}, expected {SCHEMA!r}; re-export")
    check_manifest(m, directory, expect_model)
    if verify:
        for rel, meta in m.files.items():
            p = directory / rel
            if not p.is_file():
                raise ArtifactError(f"{p}: listed in the manifest but missing; re-run 'edgeship export'")
            if p.stat().st_size != meta["size"] or sha256_file(p) != meta["sha256"]:
                raise ArtifactError(f"{p}: sha256 does not match manifest.json; the artifact is corrupt, re-run 'edgeship export'")
        if m.model_file not in m.files:   # a directory model (.mlpackage): nothing unlisted inside
            extra = [str(p.relative_to(directory)) for p in tree_files(directory / m.model_file)
                     if str(p.relative_to(directory)) not in m.files]
            if extra:
                raise ArtifactError(f"{mpath}: field 'model_file': '{extra[0]}' is not listed in files; re-run 'edgeship export'")
    return m


def check_manifest(m: Manifest, directory: Path, expect_model: str | None = None) -> None:
    """The integrity rules of read_manifest (the runner's load_manifest mirrors them)."""
    mpath = Path(directory) / MANIFEST
    again = "re-run 'edgeship export'"

    def bad(msg: str) -> ArtifactError:
        return ArtifactError(f"{mpath}: {msg}; {again}")

    for key in ("model", "target", "precision", "runtime", "model_file"):
        if not isinstance(getattr(m, key), str) or not getattr(m, key):
            raise bad(f"field '{key}' must be a non-empty string")
    if not isinstance(m.files, dict) or not m.files:
        raise bad("field 'files' must be a table of the artifact's files")
    root = os.path.realpath(directory)
    for rel, meta in m.files.items():
        reason = path_problem(rel, root)
        if reason:
            raise bad(f"files entry {rel!r} {reason}")
        if (not isinstance(meta, dict) or not isinstance(meta.get("sha256"), str)
                or not isinstance(meta.get("size"), int) or isinstance(meta.get("size"), bool)):
            raise bad(f"files entry {rel!r} needs a sha256 string and an integer size")
    reason = path_problem(m.model_file, root)
    if reason:
        raise bad(f"field 'model_file' {m.model_file!r} {reason}")
    if m.model_file not in m.files and not any(f.startswith(m.model_file + "/") for f in m.files):
        raise bad(f"field 'model_file' {m.model_file!r} is not one of the files the manifest covers")
    if not known_runtime(m.runtime):
        raise bad(f"field 'runtime' {m.runtime!r} is not a known runtime ({', '.join(runtime_names())})")
    if expect_model is not None and m.model != expect_model:
        raise bad(f"field 'model' is {m.model!r}, but the configured model is {expect_model!r}")


def path_problem(rel: object, root: str) -> str | None:
    """Why ``rel`` is not a safe path inside the artifact directory ``root`` (a realpath), or None.

    The standalone runner makes the same check on the device; one implementation serves both
    (the runner cannot import edgeship, edgeship can import the runner).
    """
    from edgeship.runtimes.runner import _path_problem

    return _path_problem(rel, root)


def runtime_names() -> list[str]:
    from edgeship.artifact.runner_files import RUNNER_FILES, runtimes_dir

    return sorted(p.stem for p in runtimes_dir().glob("*.py")
                  if p.name not in RUNNER_FILES and not p.name.startswith("_") and known_runtime(p.stem))


def known_runtime(name: str) -> bool:
    """Whether ``name`` is registered in the runtimes registry (imports only its light module)."""
    from edgeship.runtimes.base import RuntimeUnavailable, get_runtime

    if not _RUNTIME_NAME.match(name):
        return False
    try:
        get_runtime(name)
    except (RuntimeUnavailable, KeyError):
        return False
    return True
