"""manifest.json: what an artifact is, how it was made, and the checksums that prove it.

Written last into an artifact directory (inside the atomic temp dir), read by eval, profile,
gate and by the standalone runner on a device.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgeship.errors import ArtifactError
from edgeship.fsutil import sha256_file, tree_files, write_json_atomic

SCHEMA = "edgeship.manifest/1"
MANIFEST = "manifest.json"


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
        d["inputs"] = [TensorInfo(**t) for t in d["inputs"]]
        d["outputs"] = [TensorInfo(**t) for t in d["outputs"]]
        return cls(**d)

    def write(self, directory: Path) -> None:
        write_json_atomic(Path(directory) / MANIFEST, self.to_dict())


def file_table(directory: Path) -> dict[str, dict[str, Any]]:
    directory = Path(directory)
    return {
        str(p.relative_to(directory)): {"sha256": sha256_file(p), "size": p.stat().st_size}
        for p in tree_files(directory)
        if p.name != MANIFEST
    }


def read_manifest(directory: Path, verify: bool = True) -> Manifest:
    """Load an artifact's manifest; with ``verify`` check every file's size and sha256."""
    directory = Path(directory)
    mpath = directory / MANIFEST
    if not mpath.is_file():
        raise ArtifactError(f"{directory}: no {MANIFEST}; not an edgeship artifact (re-run 'edgeship export')")
    try:
        m = Manifest.from_dict(json.loads(mpath.read_text()))
    except (ValueError, TypeError, KeyError) as exc:
        raise ArtifactError(f"{mpath}: corrupt manifest ({exc}); re-run 'edgeship export'") from None
    if m.schema != SCHEMA:
        raise ArtifactError(f"{mpath}: manifest schema {m.schema!r}, expected {SCHEMA!r}; re-export")
    if verify:
        for rel, meta in m.files.items():
            p = directory / rel
            if not p.is_file():
                raise ArtifactError(f"{p}: listed in the manifest but missing; re-run 'edgeship export'")
            if p.stat().st_size != meta["size"] or sha256_file(p) != meta["sha256"]:
                raise ArtifactError(f"{p}: sha256 does not match manifest.json; the artifact is corrupt, re-run 'edgeship export'")
    return m
