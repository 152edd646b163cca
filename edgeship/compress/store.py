"""build/compressed/<model>/: the compressed program and its manifest; loading it back.

The model is saved with ``torch.export.save`` (``model.pt2``). Loading a .pt2 unpickles, which
edgeship refuses for user files without opt-in; this file is edgeship's own output, so it is
loaded only after its sha256 matches the compressed manifest written next to it (a tampered
or truncated file is refused), and only when the manifest was made from this config's
[model] and [compress] (a stale compressed model is never exported silently).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
from pathlib import Path
from typing import Any

from edgeship.config import Config
from edgeship.errors import ArtifactError, ConfigError, ExportError, UsageError
from edgeship.fsutil import atomic_directory, sha256_file, write_json_atomic
from edgeship.lazy import require

SCHEMA = "edgeship.compressed/1"
MODEL_FILE = "model.pt2"
MANIFEST = "manifest.json"


def compressed_dir(cfg: Config) -> Path:
    return (cfg.build / "compressed" / cfg.model.name).resolve()


def recipe_digest(cfg: Config) -> str:
    """What the compressed model depends on: the model, its inputs, the steps, the train data."""
    data = {
        "model": cfg.model.model_dump(mode="json"),
        "compress": cfg.compress.model_dump(mode="json"),
        "train": cfg.data.train,
        "evaluation": cfg.data.evaluation,
    }
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def save(cfg: Config, model: Any, example: tuple[Any, ...], manifest: dict[str, Any]) -> Path:
    torch = require("torch", "torch")
    out = compressed_dir(cfg)
    try:
        with torch.no_grad():
            program = torch.export.export(model, example)
    except Exception as exc:
        raise ExportError(f"{cfg.model.name}: the compressed model cannot be captured by torch.export: {exc}") from exc
    with atomic_directory(out) as tmp:
        torch.export.save(program, str(tmp / MODEL_FILE))
        p = tmp / MODEL_FILE
        manifest = {
            "schema": SCHEMA, **manifest,
            "recipe_digest": recipe_digest(cfg), "config_digest": cfg.digest,
            "files": {MODEL_FILE: {"sha256": sha256_file(p), "size": p.stat().st_size}},
            "versions": {"torch": torch.__version__, "torch_pruning": _version("torch-pruning")},
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        }
        write_json_atomic(tmp / MANIFEST, manifest)
    return out


def read(directory: Path) -> tuple[dict[str, Any], str]:
    """The compressed manifest and the sha256 of its bytes; the model file is verified."""
    mpath = directory / MANIFEST
    if not mpath.is_file():
        raise ArtifactError(f"{directory}: no {MANIFEST}; re-run 'edgeship compress'")
    raw = mpath.read_bytes()
    try:
        m = json.loads(raw)
        meta = m["files"][MODEL_FILE]
    except (ValueError, KeyError, TypeError) as exc:
        raise ArtifactError(f"{mpath}: corrupt compressed manifest ({exc}); re-run 'edgeship compress'") from None
    if m.get("schema") != SCHEMA:
        raise ArtifactError(f"{mpath}: schema {m.get('schema')!r}, expected {SCHEMA!r}; re-run 'edgeship compress'")
    p = directory / MODEL_FILE
    if not p.is_file() or p.stat().st_size != meta["size"] or sha256_file(p) != meta["sha256"]:
        raise ArtifactError(f"{p}: sha256 does not match {mpath}; refusing to load it, re-run 'edgeship compress'")
    return m, hashlib.sha256(raw).hexdigest()


def load_verified(directory: Path) -> tuple[Any, dict[str, Any], str]:
    """(nn.Module, manifest, manifest sha256) of a compressed model, hash-checked before unpickling."""
    torch = require("torch", "torch")
    m, digest = read(directory)
    try:
        # edgeship's own output, its bytes just matched the manifest: the internal trust path
        program = torch.export.load(str(directory / MODEL_FILE))
    except Exception as exc:  # noqa: BLE001  (any load failure of our own file means: rebuild it)
        raise ArtifactError(f"{directory / MODEL_FILE}: cannot be loaded ({exc}); re-run 'edgeship compress'") from None
    return program.module(), m, digest


def export_source(cfg: Config, choice: str | None) -> tuple[Any | None, dict[str, Any] | None, str | None]:
    """Which FP32 model export starts from: (model or None for the original, source record, note).

    ``choice`` None: the compressed model when this config has [compress] steps (it must exist
    and match them); without [compress], a compressed directory made by another config is
    ignored and the note says so.
    """
    directory = compressed_dir(cfg)
    if choice not in (None, "compressed", "original"):
        raise UsageError(f"--from must be 'compressed' or 'original', not {choice!r}")
    if choice == "original":
        return None, {"kind": "original"}, None
    exists = (directory / MANIFEST).is_file()
    if choice is None and not cfg.compress.steps:
        note = f"ignored {directory} (this config has no [compress])" if exists else None
        return None, {"kind": "original"}, note
    if not exists:
        raise UsageError(f"{directory} not found: run 'edgeship compress' first, or export --from original")
    m, _ = read(directory)
    if m.get("recipe_digest") != recipe_digest(cfg):
        raise ConfigError(
            f"{directory} was made from a different [model]/[compress]/[data] train than {cfg.path or 'the config'}; "
            "re-run 'edgeship compress' (or export --from original)"
        )
    model, m, digest = load_verified(directory)
    steps = "+".join(s["kind"] for s in m["steps"])
    record = {
        "kind": "compressed", "path": str(directory), "manifest_sha256": digest,
        "model_sha256": m["files"][MODEL_FILE]["sha256"], "steps": steps,
        "original_accuracy": m["original"]["accuracy"], "compressed_accuracy": m["compressed"]["accuracy"],
    }
    return model, record, f"from compressed model ({steps})"


def _version(dist: str) -> str:
    import importlib.metadata

    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"
