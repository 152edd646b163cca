"""build/compressed/<model>/: the compressed model, its manifest, and loading it back.

Two files hold the model. ``weights.npz`` (every parameter and buffer, numpy, no pickle) is
what edgeship loads: the original architecture from ``[model] factory`` is given the
recorded shapes by replaying each step's ``rebuild`` (pruned widths, factorized ranks), then
the weights are loaded strictly. Nothing is unpickled. ``model.pt2`` (``torch.export.save``)
is the same model for use outside edgeship; edgeship writes it (proving the model still
captures with torch.export) but never loads it, because loading a .pt2 unpickles.

Both files are checked against the sha256 in the manifest before use (a tampered or
truncated file is refused), and the manifest must have been made from this config's
[model]/[compress]/[data] train (a stale compressed model is never exported silently).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from edgeship.artifact.atomic import atomic_directory, sha256_file, sweep, write_json_atomic
from edgeship.config import Config
from edgeship.errors import ArtifactError, ConfigError, ExportError, UsageError
from edgeship.lazy import require
from edgeship.untrusted import UntrustedJSONError, loads

SCHEMA = "edgeship.compressed/1"
MODEL_FILE = "model.pt2"
WEIGHTS_FILE = "weights.npz"
MANIFEST = "manifest.json"


def compressed_dir(cfg: Config) -> Path:
    # the link itself, never what it points to: atomic_directory publishes a new version by
    # swapping this link; given the resolved version directory it turned that into a link one
    # level deeper on every run (".m.v1" -> "..m.v1.v2" ...) until the name grew too long
    return (cfg.build / "compressed").resolve() / cfg.model.name


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
        buf = io.BytesIO()
        np.savez(buf, **{k: v.detach().cpu().numpy() for k, v in model.state_dict().items()})
        (tmp / WEIGHTS_FILE).write_bytes(buf.getvalue())
        manifest = {
            "schema": SCHEMA, **manifest,
            "recipe_digest": recipe_digest(cfg), "config_digest": cfg.digest,
            "files": {f: {"sha256": sha256_file(tmp / f), "size": (tmp / f).stat().st_size}
                      for f in (WEIGHTS_FILE, MODEL_FILE)},
            "versions": {"torch": torch.__version__, "torch_pruning": _version("torch-pruning")},
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        }
        write_json_atomic(tmp / MANIFEST, manifest)
    _drop_nested_links(out)
    return out


def _drop_nested_links(out: Path) -> None:
    """Remove the version-named links older edgeship nested under ``out`` (see compressed_dir);
    the sweep then removes the versions they kept alive. atomic_directory never makes such links."""
    for p in out.parent.iterdir():   # ".m.v1", "..m.v1.v2", ...: any depth of the chain
        if p.is_symlink() and p.name.startswith(".") and p.name.lstrip(".").startswith(f"{out.name}.v"):
            p.unlink(missing_ok=True)
    sweep(out.parent)


def read(directory: Path) -> tuple[dict[str, Any], str]:
    """The compressed manifest and the sha256 of its bytes; the model file is verified."""
    mpath = directory / MANIFEST
    if not mpath.is_file():
        raise ArtifactError(f"{directory}: no {MANIFEST}; re-run 'edgeship compress'")
    raw = mpath.read_bytes()
    try:
        m = loads(raw)
    except UntrustedJSONError as exc:
        raise ArtifactError(f"{mpath}: corrupt compressed manifest ({exc}); re-run 'edgeship compress'") from None
    if isinstance(m, dict) and m.get("schema") != SCHEMA:
        raise ArtifactError(f"{mpath}: schema {m.get('schema')!r}, expected {SCHEMA!r}; re-run 'edgeship compress'")
    why = _manifest_problem(m)
    if why is not None:
        raise ArtifactError(f"{mpath}: corrupt compressed manifest ({why}); re-run 'edgeship compress'")
    files = {f: m["files"][f] for f in (WEIGHTS_FILE, MODEL_FILE)}
    for name, meta in files.items():
        p = directory / name
        if not p.is_file() or p.stat().st_size != meta["size"] or sha256_file(p) != meta["sha256"]:
            raise ArtifactError(f"{p}: sha256 does not match {mpath}; refusing to load it, re-run 'edgeship compress'")
    return m, hashlib.sha256(raw).hexdigest()


def _manifest_problem(m: Any) -> str | None:
    """What of the compressed manifest is not as ``save`` writes it (the fields edgeship reads),
    or None: a hand-edited one is refused with the field, never a KeyError later."""
    if not isinstance(m, dict):
        return f"a JSON {type(m).__name__}, expected an object"
    files = m.get("files")
    for f in (WEIGHTS_FILE, MODEL_FILE):
        meta = files.get(f) if isinstance(files, dict) else None
        if not isinstance(meta, dict) or not isinstance(meta.get("sha256"), str) or \
                isinstance(meta.get("size"), bool) or not isinstance(meta.get("size"), int):
            return f"'files.{f}' is not {{sha256, size}}"
    steps = m.get("steps")
    if not isinstance(steps, list) or not all(isinstance(st, dict) and isinstance(st.get("kind"), str) for st in steps):
        return "'steps' is not a list of step records"
    for key in ("original", "compressed"):
        block = m.get(key)
        acc = block.get("accuracy", "missing") if isinstance(block, dict) else "missing"
        if acc is not None and (isinstance(acc, bool) or not isinstance(acc, (int, float))):
            return f"'{key}.accuracy' is not a number"
    return None


def _read_weights(path: Path, expected: dict[str, Any]) -> dict[str, Any]:
    """The tensors of ``weights.npz``, each checked against the rebuilt model's before it is
    read (name, shape, numeric dtype: a header claiming a huge shape allocates nothing), then
    for its exact dtype and finite values. The sha256 only says the file is the one the
    manifest names; a manifest re-signed over a bad file must be refused here, with the file."""
    import zipfile

    torch = require("torch", "torch")
    again = "re-run 'edgeship compress'"
    state: dict[str, Any] = {}
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise ArtifactError(f"{path}: a single array, not an .npz of the model's tensors; {again}")
        with loaded as z:
            members = {n.removesuffix(".npy"): n for n in z.zip.namelist()}
            for key in sorted(set(expected) ^ set(members)):
                what = "lacks" if key in expected else "has an unexpected"
                raise ArtifactError(f"{path}: {what} tensor '{key}' for the rebuilt model; {again}")
            for key, name in members.items():
                with z.zip.open(name) as f:
                    version = np.lib.format.read_magic(f)
                    header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                    shape, _fortran, dtype = header(f)
                want = tuple(expected[key].shape)
                if tuple(shape) != want or dtype.kind not in "biuf":
                    raise ArtifactError(f"{path}: tensor '{key}' is {dtype} {list(shape)}, the rebuilt model's is "
                                        f"{expected[key].dtype} {list(want)}; {again}")
                t = torch.from_numpy(z[key])
                if t.dtype != expected[key].dtype:
                    raise ArtifactError(f"{path}: tensor '{key}' is {t.dtype}, the rebuilt model's is "
                                        f"{expected[key].dtype}; {again}")
                if t.is_floating_point() and not bool(torch.isfinite(t).all()):
                    raise ArtifactError(f"{path}: tensor '{key}' holds NaN or inf; {again}")
                state[key] = t
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:   # not a zip, not .npy members, truncated
        msg = " ".join(str(exc).split())[:200]
        raise ArtifactError(f"{path}: not a readable .npz of the model's tensors ({msg}); {again}") from None
    return state


def load_verified(cfg: Config, directory: Path | None = None) -> tuple[Any, dict[str, Any], str]:
    """(nn.Module, manifest, manifest sha256): the original architecture given the recorded
    shapes, then the hash-checked weights loaded strictly; nothing is unpickled."""
    torch = require("torch", "torch")
    from edgeship.compress.base import get_step
    from edgeship.model.reference import load_reference, synthetic_inputs

    directory = directory or compressed_dir(cfg)
    m, digest = read(directory)
    if m.get("recipe_digest") != recipe_digest(cfg):
        raise ConfigError(
            f"{directory} was made from a different [model]/[compress]/[data] train than {cfg.path or 'the config'}; "
            "re-run 'edgeship compress' (or export --from original)"
        )
    model = load_reference(cfg)
    example = tuple(torch.from_numpy(a) for a in synthetic_inputs(cfg.model.inputs).values())
    mpath = directory / MANIFEST
    kinds = [step.kind for step in cfg.compress.steps]
    if [record["kind"] for record in m["steps"]] != kinds:
        raise ArtifactError(f"{mpath}: records steps {[r['kind'] for r in m['steps']]}, the config {kinds}; "
                            "re-run 'edgeship compress'")
    for i, (step, record) in enumerate(zip(cfg.compress.steps, m["steps"])):
        try:
            model = get_step(step, i).rebuild(model, record, example)
        except (KeyError, TypeError, ValueError, IndexError) as exc:   # a record not as the step wrote it
            raise ArtifactError(f"{mpath}: 'steps[{i}]' ({step.kind}) is not a record this step wrote "
                                f"({type(exc).__name__}: {exc}); re-run 'edgeship compress'") from None
    state = _read_weights(directory / WEIGHTS_FILE, model.state_dict())
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ArtifactError(f"{directory / WEIGHTS_FILE}: does not fit the rebuilt model ({str(exc).splitlines()[0]}); "
                            "re-run 'edgeship compress'") from None
    return model.eval(), m, digest


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
    model, m, digest = load_verified(cfg, directory)
    steps = "+".join(s["kind"] for s in m["steps"])
    record = {
        "kind": "compressed", "path": str(directory), "manifest_sha256": digest,
        "weights_sha256": m["files"][WEIGHTS_FILE]["sha256"], "steps": steps,
        "original_accuracy": m["original"]["accuracy"], "compressed_accuracy": m["compressed"]["accuracy"],
    }
    return model, record, f"from compressed model ({steps})"


def _version(dist: str) -> str:
    import importlib.metadata

    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"
