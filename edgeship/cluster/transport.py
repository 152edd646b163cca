"""Artifacts travel by content: packed once on the submitting host, checked on arrival.

The receiving node rebuilds the directory and reads it with edgeship.artifact.manifest's integrity
checks (every file's size and sha256), then compares the evidence digest (sha256 of
manifest.json, BRIEF contract 1) with the one the submitter computed: a node never measures
bytes other than the ones the gate will judge.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

from edgeship.artifact.selection import ArtifactRef
from edgeship.errors import ArtifactError


def pack(ref: ArtifactRef) -> dict[str, Any]:
    from edgeship.artifact.manifest import artifact_digest

    files = {p.relative_to(ref.path).as_posix(): p.read_bytes() for p in sorted(ref.path.rglob("*")) if p.is_file()}
    return {"name": ref.name, "digest": artifact_digest(ref.path), "files": files}


def unpack(payload: dict[str, Any], root: Path, model: str) -> ArtifactRef:
    """Write the artifact under ``root/<name>/`` and return it, verified; ArtifactError otherwise."""
    from edgeship.artifact.manifest import artifact_digest, read_manifest

    name = payload["name"]
    if "/" in name or name in ("", ".", ".."):
        raise ArtifactError(f"artifact name {name!r} from the submitter is not a directory name")
    dest = root / name
    for rel, data in payload["files"].items():
        parts = PurePosixPath(rel).parts
        if not parts or PurePosixPath(rel).is_absolute() or ".." in parts:
            raise ArtifactError(f"artifact {name}: file {rel!r} leaves the artifact directory")
        path = dest.joinpath(*parts)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    manifest = read_manifest(dest, verify=True, expect_model=model)
    got = artifact_digest(dest)
    if got != payload["digest"]:
        raise ArtifactError(f"artifact {name}: arrived with digest {got[:12]}, sent as {payload['digest'][:12]}")
    return ArtifactRef(dest, manifest)
