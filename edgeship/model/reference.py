"""The FP32 PyTorch reference: built from a factory or loaded from a torch.export .pt2."""

from __future__ import annotations

import zipfile
from collections.abc import Sequence
from typing import Any

import numpy as np

from edgeship.config import Config, InputSpec
from edgeship.errors import ConfigError, ExportError
from edgeship.lazy import require
from edgeship.model.refs import resolve_callable


def load_reference(cfg: Config) -> Any:
    """Return an ``nn.Module`` in eval mode (a .pt2 program is wrapped with ``.module()``)."""
    torch = require("torch", "torch", "loading the PyTorch model")
    if cfg.model.factory is not None:
        fn = resolve_callable(cfg.model.factory, "model.factory", cfg.root)
        try:
            model = fn()
        except Exception as exc:
            raise ConfigError(f"key 'model.factory': {cfg.model.factory}() raised {type(exc).__name__}: {exc}") from exc
        if not isinstance(model, torch.nn.Module):
            raise ConfigError(
                f"key 'model.factory': {cfg.model.factory}() returned {type(model).__name__}, expected torch.nn.Module"
            )
        return model.eval()
    path = cfg.resolve(cfg.model.source)  # type: ignore[arg-type]
    if not zipfile.is_zipfile(path):
        raise ConfigError(f"key 'model.source': {path} is not a torch.export .pt2 archive (save one with torch.export.save)")
    if not cfg.model.trust_source:
        _refuse_pickles(path, torch)
    try:
        program = torch.export.load(str(path))
    except Exception as exc:  # noqa: BLE001  (torch.export.load raises many types; all mean 'not loadable')
        raise ConfigError(f"key 'model.source': {path} could not be loaded as a torch.export program: {exc}") from None
    return program.module()


def _refuse_pickles(path: Any, torch: Any) -> None:
    """ConfigError unless ``path`` loads without running pickled code (see pt2_safety)."""
    import io

    from edgeship.model.pt2_safety import pickled_members

    try:
        refused, samples = pickled_members(path)
        with zipfile.ZipFile(path) as z:
            for name in samples:
                try:
                    torch.load(io.BytesIO(z.read(name)), weights_only=True)
                except Exception as exc:  # noqa: BLE001 (whatever the restricted unpickler raises, it refused)
                    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                    refused.append(f"{name.split('/', 1)[-1]} (pickle beyond plain tensors: {first[:120]})")
    except (OSError, zipfile.BadZipFile, RuntimeError) as exc:
        raise ConfigError(f"key 'model.source': {path} is not a readable .pt2 archive ({exc})") from None
    if refused:
        raise ConfigError(
            f"key 'model.source': {path} holds pickled data ({refused[0]}) that torch.export.load would "
            "unpickle, which can run any code; set [model] trust_source = true only if you trust "
            "whoever made this file"
        )


def synthetic_inputs(specs: Sequence[InputSpec], seed: int = 0) -> dict[str, np.ndarray]:
    """Deterministic inputs matching the specs (for profiling when no data is configured)."""
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for s in specs:
        dt = np.dtype(s.dtype)
        if dt.kind == "f":
            out[s.name] = rng.standard_normal(s.shape).astype(dt)
        elif dt.kind == "b":
            out[s.name] = np.ones(s.shape, dtype=dt)
        else:
            lo, hi = s.range if s.range else (0, 100)
            out[s.name] = rng.integers(int(lo), int(hi) + 1, size=s.shape).astype(dt)
    return out


def run_reference(model: Any, inputs: dict[str, np.ndarray], specs: Sequence[InputSpec]) -> list[np.ndarray]:
    """Run the torch model on numpy inputs; returns outputs as float32/int numpy arrays."""
    torch = require("torch", "torch")
    args = tuple(torch.from_numpy(np.ascontiguousarray(inputs[s.name])) for s in specs)
    with torch.no_grad():
        try:
            out = model(*args)
        except Exception as exc:
            raise ExportError(f"the reference model failed on inputs shaped {[a.shape for a in args]}: {exc}") from exc
    outs = out if isinstance(out, (tuple, list)) else (out,)
    return [o.detach().cpu().numpy() for o in outs]


def reference_outputs(job: Any, feeds: Sequence[dict[str, np.ndarray]], chunk: int = 64) -> list[list[np.ndarray]]:
    """FP32 outputs per feed, computed in batches of ``chunk`` where the model is batch-safe.

    One forward per sample costs ~100x more in torch call overhead than the work of a tiny
    model. Batching is used only when it reproduces the per-sample outputs of the first feed
    and returns one row per feed (a model hard-wired to batch 1 gets one call per sample).
    """
    one = run_reference(job.model, feeds[0], job.inputs)
    if len(feeds) == 1 or any(np.ndim(o) == 0 or np.shape(o)[0] != 1 for o in one):
        return [one] + [run_reference(job.model, f, job.inputs) for f in feeds[1:]]
    out: list[list[np.ndarray]] = []
    for i in range(0, len(feeds), chunk):
        part = feeds[i:i + chunk]
        try:
            got = run_reference(job.model, {k: np.concatenate([f[k] for f in part]) for k in part[0]}, job.inputs)
        except Exception:   # noqa: BLE001  (not batchable: per sample, same numbers)
            got = None
        if got is None or any(np.shape(o)[:1] != (len(part),) for o in got) or (
                i == 0 and not all(np.allclose(a[:1], b, rtol=1e-4, atol=1e-5) for a, b in zip(got, one))):
            return [one] + [run_reference(job.model, f, job.inputs) for f in feeds[1:]]
        out += [[o[j:j + 1] for o in got] for j in range(len(part))]
    return out
