"""Data sources: a ``module:fn`` reference or a directory of .npz/.npy files."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeship.config import InputSpec
from edgeship.errors import ConfigError, InputDataError
from edgeship.refs import resolve_callable


@dataclass(frozen=True)
class Sample:
    """One model invocation: inputs shaped exactly like the input specs, optional label."""

    inputs: dict[str, np.ndarray]
    label: np.ndarray | None = None


@dataclass(frozen=True)
class DataSource:
    ref: str          # as written in the config
    key: str          # the config key, for messages ("data.calibration")
    root: Path        # directory the config lives in

    def _batches(self) -> Iterable[dict[str, Any]]:
        if ":" in self.ref and not Path(self.ref).exists():
            fn = resolve_callable(self.ref, self.key)
            try:
                return fn()
            except Exception as exc:
                raise InputDataError(f"key '{self.key}': {self.ref}() failed: {exc}") from exc
        path = Path(self.ref)
        path = path if path.is_absolute() else self.root / path
        if not path.is_dir():
            raise ConfigError(f"key '{self.key}': directory not found: {path} (create it or fix the path)")
        files = sorted(p for p in path.iterdir() if p.suffix in (".npz", ".npy"))
        if not files:
            raise InputDataError(f"key '{self.key}': {path} holds no .npz or .npy files")
        return (_load_file(p) for p in files)

    def batches(self) -> Iterator[dict[str, Any]]:
        for i, batch in enumerate(self._batches()):
            if not isinstance(batch, dict):
                raise InputDataError(
                    f"key '{self.key}': batch {i} is a {type(batch).__name__}, expected dict[str, ndarray]"
                )
            yield batch


def _load_file(p: Path) -> dict[str, Any]:
    try:
        if p.suffix == ".npy":
            return {"__single__": np.load(p, allow_pickle=False)}
        with np.load(p, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (ValueError, OSError) as exc:
        raise InputDataError(f"{p}: not a readable numpy file ({exc})") from None


def load_samples(
    source: DataSource,
    specs: Sequence[InputSpec],
    limit: int | None,
    label_key: str = "label",
) -> list[Sample]:
    """Read up to ``limit`` samples, re-cut to the specs' batch size, with dtype/shape checks."""
    batch = specs[0].shape[0]
    names = [s.name for s in specs]
    pending: dict[str, list[np.ndarray]] = {n: [] for n in names}
    labels: list[np.ndarray] = []
    rows = 0
    out: list[Sample] = []
    for i, raw in enumerate(source.batches()):
        if "__single__" in raw:
            if len(specs) != 1:
                raise InputDataError(f"key '{source.key}': .npy files need a single-input model; use .npz keyed by input name")
            raw = {names[0]: raw["__single__"]}
        missing = [n for n in names if n not in raw]
        if missing:
            raise InputDataError(
                f"key '{source.key}': batch {i} lacks input(s) {missing}; it has {sorted(raw)}"
            )
        n = None
        for spec in specs:
            arr = np.asarray(raw[spec.name])
            if arr.ndim == len(spec.shape) - 1:
                arr = arr[None]
            if tuple(arr.shape[1:]) != tuple(spec.shape[1:]):
                raise InputDataError(
                    f"key '{source.key}': input '{spec.name}' has shape {list(arr.shape)}, "
                    f"expected [N, {', '.join(map(str, spec.shape[1:]))}]"
                )
            if n is not None and arr.shape[0] != n:
                raise InputDataError(f"key '{source.key}': inputs of batch {i} differ in batch size")
            n = arr.shape[0]
            pending[spec.name].append(_cast(arr, spec, source.key))
        if label_key in raw:
            labels.append(np.asarray(raw[label_key]).reshape(n, *np.asarray(raw[label_key]).shape[1:]))
        rows += int(n or 0)
        while rows >= batch:
            cut = {k: np.concatenate(v) for k, v in pending.items()}
            lab = np.concatenate(labels) if labels else None
            out.append(Sample({k: a[:batch] for k, a in cut.items()}, None if lab is None else lab[:batch]))
            pending = {k: [a[batch:]] for k, a in cut.items()}
            labels = [lab[batch:]] if lab is not None else []
            rows -= batch
            if limit is not None and len(out) >= limit:
                return out
    if not out:
        raise InputDataError(f"key '{source.key}': no samples (need at least {batch} rows)")
    return out


def _cast(arr: np.ndarray, spec: InputSpec, key: str) -> np.ndarray:
    want = np.dtype(spec.dtype)
    if arr.dtype == want:
        return arr
    if np.can_cast(arr.dtype, want, casting="same_kind"):
        return arr.astype(want)
    raise InputDataError(f"key '{key}': input '{spec.name}' has dtype {arr.dtype}, expected {spec.dtype}")
