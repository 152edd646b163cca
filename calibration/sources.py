"""Data sources: a ``module:fn`` reference or a directory of .npz/.npy files."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeship.config import Config, InputSpec
from edgeship.errors import ConfigError, InputDataError, UsageError
from edgeship.model.refs import resolve_callable


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

    @property
    def where(self) -> str:
        """The setting as the user wrote it, for messages: ``[data] calibration = "pkg:fn"``."""
        table, _, name = self.key.rpartition(".")
        return f'[{table or "data"}] {name} = "{self.ref}"'

    @property
    def _is_function(self) -> bool:
        return ":" in self.ref and not Path(self.ref).exists()

    def fail(self, what: str) -> InputDataError:
        fix = "fix that function" if self._is_function else "fix those files"
        return InputDataError(f"{self.where}: {what}; {fix} or point the key at other data")

    def _batches(self) -> Iterable[dict[str, Any]]:
        if self._is_function:
            fn = resolve_callable(self.ref, self.key, self.root)
            try:
                out = fn()
            except Exception as exc:  # (the user's code: any failure is bad input)
                raise self.fail(f"{self.ref}() raised {type(exc).__name__}: {_one_line(exc)}") from exc
            if isinstance(out, dict) or not isinstance(out, Iterable):
                raise self.fail(f"{self.ref}() returned {type(out).__name__}, expected an iterable of "
                                "dict[str, ndarray] batches (a list, or a generator that yields them)")
            return out
        path = Path(self.ref)
        path = path if path.is_absolute() else self.root / path
        if not path.is_dir():
            raise ConfigError(f"key '{self.key}': directory not found: {path} (create it or fix the path)")
        files = sorted(p for p in path.iterdir() if p.suffix in (".npz", ".npy"))
        if not files:
            raise self.fail(f"{path} holds no .npz or .npy files")
        return (_load_file(p) for p in files)

    def batches(self) -> Iterator[dict[str, Any]]:
        it = iter(self._batches())
        i = 0
        while True:
            try:
                batch = next(it)
            except StopIteration:
                return
            except InputDataError:
                raise
            except Exception as exc:  # (a generator of the user's failing midway)
                raise self.fail(f"batch {i} raised {type(exc).__name__}: {_one_line(exc)}") from exc
            if not isinstance(batch, dict):
                raise self.fail(f"batch {i} is a {type(batch).__name__}, expected dict[str, ndarray]")
            yield batch
            i += 1


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200] or "(no message)"


def _load_file(p: Path) -> dict[str, Any]:
    try:
        if p.suffix == ".npy":
            return {"__single__": np.load(p, allow_pickle=False)}
        with np.load(p, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except Exception as exc:   # noqa: BLE001  (zip, pickle, header errors: any of them means a bad file)
        raise InputDataError(f"{p}: not a readable numpy file ({_one_line(exc)}); replace or remove it") from None


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
                raise source.fail(".npy files need a single-input model; use .npz keyed by input name")
            raw = {names[0]: raw["__single__"]}
        missing = [n for n in names if n not in raw]
        if missing:
            raise source.fail(f"batch {i} lacks input(s) {missing}; it has {sorted(map(str, raw))}")
        n = None
        for spec in specs:
            arr = _array(raw[spec.name], source, f"batch {i}, input '{spec.name}'")
            if arr.ndim == len(spec.shape) - 1:
                arr = arr[None]
            if tuple(arr.shape[1:]) != tuple(spec.shape[1:]):
                raise source.fail(f"batch {i}: input '{spec.name}' has shape {list(arr.shape)}, "
                                  f"expected [N, {', '.join(map(str, spec.shape[1:]))}]")
            if n is not None and arr.shape[0] != n:
                raise source.fail(f"inputs of batch {i} differ in batch size")
            n = arr.shape[0]
            arr = _cast(arr, spec, source, i)
            _finite(arr, source, f"batch {i}: input '{spec.name}'")
            pending[spec.name].append(arr)
        if label_key in raw:
            lab = _array(raw[label_key], source, f"batch {i}, '{label_key}'")
            if lab.ndim == 0 or lab.shape[0] != n:
                got = "a scalar" if lab.ndim == 0 else f"{lab.shape[0]} labels"
                raise source.fail(f"batch {i} has {n} input rows but {got} in '{label_key}' "
                                  "(one label per row)")
            if labels and lab.shape[1:] != labels[0].shape[1:]:
                raise source.fail(f"batch {i}: '{label_key}' has shape {list(lab.shape)}, earlier batches "
                                  f"{list(labels[0].shape)}")
            labels.append(lab)
        elif labels:
            raise source.fail(f"batch {i} has no '{label_key}' but earlier batches do")
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
        raise source.fail(f"no samples (need at least {batch} rows)")
    return out


def _array(value: Any, source: DataSource, what: str) -> np.ndarray:
    """``value`` as a numeric ndarray, or one line saying what it is instead."""
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError) as exc:   # ragged lists, objects numpy cannot hold
        raise source.fail(f"{what} is not an array ({_one_line(exc)})") from None
    if arr.dtype.kind not in "biuf":
        raise source.fail(f"{what} has dtype {arr.dtype} ({type(value).__name__}), expected numbers")
    return arr


def _finite(arr: np.ndarray, source: DataSource, what: str) -> None:
    """NaN or inf in the data would reach calibration ranges and the reference outputs, and
    surface as a mismatch of the artifact's outputs that never names the data: say it here."""
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        bad = np.argwhere(~np.isfinite(arr))[0]
        kinds = " and ".join(k for k, hit in (("NaN", np.isnan(arr).any()), ("inf", np.isinf(arr).any())) if hit)
        raise source.fail(f"{what} holds {kinds} (first at index {list(map(int, bad))}); "
                          "every input value must be a finite number")


def _cast(arr: np.ndarray, spec: InputSpec, source: DataSource, i: int) -> np.ndarray:
    want = np.dtype(spec.dtype)
    if arr.dtype == want:
        return arr
    if np.can_cast(arr.dtype, want, casting="same_kind"):
        return arr.astype(want)
    raise source.fail(f"batch {i}: input '{spec.name}' has dtype {arr.dtype}, expected {spec.dtype}")


def evaluation_samples(cfg: Config) -> list[Sample]:
    ref = cfg.data.evaluation or cfg.data.calibration
    if ref is None:
        raise UsageError("eval needs data: set [data] evaluation (or calibration) in edgeship.toml")
    key = "data.evaluation" if cfg.data.evaluation else "data.calibration"
    return load_samples(DataSource(ref, key, cfg.root), cfg.model.inputs, cfg.data.evaluation_samples, cfg.data.label_key)
