"""The runtime contract (standalone: numpy only, Python >= 3.8, no edgeship imports).

A runtime loads one artifact and runs it. ``prepare`` turns float/int feeds into what the
backend wants (quantizing inputs of int8-I/O artifacts with the tensor's own scale and zero
point), ``invoke`` is the only call the runner times, ``finish`` turns raw outputs back into
float arrays keyed by output name. Runtimes are context managers.

Registration: ``@register("name")`` in ``<name>.py``; ``get_runtime(name)`` imports the module
of that name from this package on demand, so only the runtime in use is ever imported.
"""

import abc
import importlib
from typing import Any, Callable, ClassVar, Dict, List, Optional, Tuple, Type  # noqa: F401 (ClassVar: type comment)

import numpy as np

RUNTIMES = {}  # type: Dict[str, Type[Runtime]]


class RuntimeUnavailable(Exception):
    """The runtime's Python package is not importable here (the artifact is SKIPPED)."""


class RuntimeLoadError(Exception):
    """The artifact could not be loaded (corrupt file, unsupported op)."""


class RuntimeRunError(Exception):
    """Inference failed (wrong input shape/dtype, backend error)."""


class NotReported(Exception):
    """The runtime cannot report this here (per-op times, intermediate tensors); the message
    says why in one line. Never an error of the artifact: the result records the reason."""


def register(name: str) -> Callable[[type], type]:
    def deco(cls: type) -> type:
        if name in RUNTIMES and RUNTIMES[name] is not cls:
            raise ValueError("runtime %r is already registered" % name)
        cls.name = name  # type: ignore[attr-defined]
        RUNTIMES[name] = cls
        return cls

    return deco


def get_runtime(name: str) -> "Type[Runtime]":
    if name not in RUNTIMES:
        try:
            importlib.import_module("." + name, __package__)
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.endswith("." + name):
                raise RuntimeUnavailable("unknown runtime %r" % name) from None
            raise
    return RUNTIMES[name]


class Runtime(abc.ABC):
    name = ""  # type: ClassVar[str]

    def __init__(self, model_path: str, manifest: Dict[str, Any], threads: int = 1,
                 options: Optional[Dict[str, Any]] = None) -> None:
        self.model_path = model_path
        self.manifest = manifest
        self.threads = threads
        self.options = dict(options or {})

    # -- lifecycle ---------------------------------------------------------------------------
    def __enter__(self) -> "Runtime":  # noqa: PYI034  (the runner stays Python 3.8: no typing.Self)
        self.load()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def load(self) -> None:
        try:
            self._load()
        except (RuntimeUnavailable, RuntimeLoadError):
            raise
        except Exception as exc:
            raise RuntimeLoadError("%s: cannot load %s: %s: %s" % (self.name, self.model_path, type(exc).__name__, exc)) from exc

    def close(self) -> None:
        pass

    # -- inference ---------------------------------------------------------------------------
    def prepare(self, feeds: Dict[str, np.ndarray]) -> Any:
        """Validate and convert feeds once; the result is passed to ``invoke`` repeatedly."""
        specs = {t["name"]: t for t in self.manifest["inputs"]}
        missing = [n for n in specs if n not in feeds]
        if missing:
            raise RuntimeRunError("missing input(s) %s; got %s" % (missing, sorted(feeds)))
        out = {}
        for name, spec in specs.items():
            arr = np.asarray(feeds[name])
            if spec.get("shape") and list(arr.shape) != list(spec["shape"]):
                raise RuntimeRunError("input %r has shape %s, the artifact expects %s" % (name, list(arr.shape), spec["shape"]))
            out[name] = quantize(arr, spec)
        return self._prepare(out)

    def invoke(self, prepared: Any) -> Any:
        """One inference; the only thing the runner times."""
        return self._invoke(prepared)

    def finish(self, raw: Any) -> Dict[str, np.ndarray]:
        outs = self._outputs(raw)
        specs = {t["name"]: t for t in self.manifest["outputs"]}
        return {n: dequantize(a, specs.get(n, {})) for n, a in outs.items()}

    def run(self, feeds: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        try:
            return self.finish(self.invoke(self.prepare(feeds)))
        except RuntimeRunError:
            raise
        except Exception as exc:
            raise RuntimeRunError("%s: inference failed: %s: %s" % (self.name, type(exc).__name__, exc)) from exc

    # -- backend hooks -----------------------------------------------------------------------
    @abc.abstractmethod
    def _load(self) -> None:
        """Load the model file; raise RuntimeUnavailable if the runtime cannot run here."""

    def _prepare(self, feeds: Dict[str, np.ndarray]) -> Any:
        return feeds

    @abc.abstractmethod
    def _invoke(self, prepared: Any) -> Any:
        """One inference on prepared inputs; returns the backend's raw outputs."""

    @abc.abstractmethod
    def _outputs(self, raw: Any) -> Dict[str, np.ndarray]:
        """Map raw backend outputs to {output name: array} in manifest order."""

    @classmethod
    @abc.abstractmethod
    def version(cls) -> str:
        """The runtime's version; raises RuntimeUnavailable when its package is missing."""

    def describe(self) -> Dict[str, Any]:
        """Runtime metadata recorded in result.json (threads, providers, delegates ...)."""
        return {"name": self.name, "version": self.version(), "threads": self.threads}

    # -- looking inside (profile --ops, eval --layers) ---------------------------------------
    @classmethod
    def op_times_reason(cls) -> Optional[str]:
        """Why this runtime gives no per-op times (one line), or None when it does."""
        return "%s reports no per-op times" % cls.name

    def op_times(self) -> List[Tuple[str, str, int]]:
        """Every op execution since load, in order: (node name, op type, duration ns).

        Only when loaded with ``options["op_profile"]`` (a separate run: profiling slows the
        runs it observes). Raises NotReported where the runtime gives no per-op times.
        """
        raise NotReported("%s reports no per-op times" % self.name)

    def intermediates(self, feeds: Dict[str, np.ndarray]) -> List[Dict[str, Any]]:
        """One inference that keeps the layers' output tensors, in execution order:
        ``[{"name", "node", "op_type", "array", "quantization"}]`` (``array`` as the runtime
        holds it, ``quantization`` ``{"scale", "zero_point"}`` for an integer tensor), then
        the model's outputs as ``{"name": ..., "output": True, "array": ...}`` (dequantized),
        so the caller can check the observed run computes what the shipped one does."""
        raise NotReported("%s cannot return intermediate tensors" % self.name)


def quantize(arr: np.ndarray, spec: Dict[str, Any]) -> np.ndarray:
    """Float -> the tensor's integer dtype with its own scale/zero point (int8-I/O artifacts)."""
    dtype = np.dtype(spec.get("dtype", str(arr.dtype)))
    q = spec.get("quantization")
    if q and dtype.kind in "iu" and arr.dtype.kind == "f":
        info = np.iinfo(dtype)
        vals = np.round(arr / float(q["scale"])) + int(q["zero_point"])
        return np.clip(vals, info.min, info.max).astype(dtype)
    if arr.dtype != dtype:
        if arr.dtype.kind == "f" and dtype.kind in "iu":
            raise RuntimeRunError("input %r is %s, the artifact expects %s" % (spec.get("name"), arr.dtype, dtype))
        return arr.astype(dtype)
    return arr


def narrow(arr: np.ndarray, name: str, to: np.dtype, cast: Optional[Dict[str, Any]]) -> np.ndarray:
    """``arr`` (the declared dtype) converted to the model's ``to`` as the manifest's recorded
    cast says (``{"from", "to", "by"}``); RuntimeRunError when no cast is recorded or a value
    does not fit ``to``."""
    if not cast or cast.get("from") != arr.dtype.name or cast.get("to") != np.dtype(to).name:
        raise RuntimeRunError("input %r is %s, the model takes %s and the manifest records no such cast; "
                              "re-export the artifact" % (name, arr.dtype, np.dtype(to)))
    to = np.dtype(to)
    if arr.size and to.kind in "iu":
        info = np.iinfo(to)
        lo, hi = int(arr.min()), int(arr.max())
        if lo < info.min or hi > info.max:
            raise RuntimeRunError("input %r has values in [%d, %d], outside %s (the model takes %s: %s)"
                                  % (name, lo, hi, to, to, cast.get("by", "converter")))
    elif arr.size and to.kind == "f":
        big = np.isfinite(arr) & (np.abs(arr) > np.finfo(to).max)
        if big.any():
            raise RuntimeRunError("input %r has values beyond %s's range (the model takes %s: %s)"
                                  % (name, to, to, cast.get("by", "converter")))
    return arr.astype(to)


def dequantize(arr: np.ndarray, spec: Dict[str, Any]) -> np.ndarray:
    q = spec.get("quantization")
    if q and arr.dtype.kind in "iu":
        return ((arr.astype(np.float32) - int(q["zero_point"])) * float(q["scale"])).astype(np.float32)
    if arr.dtype == np.float16:
        return arr.astype(np.float32)
    return arr


def available(name: str) -> Tuple[bool, str]:
    """Whether runtime ``name`` can be imported here, and why not."""
    try:
        cls = get_runtime(name)
        cls.version()
        return True, ""
    except (RuntimeUnavailable, ImportError) as exc:
        return False, str(exc)


def output_names(manifest: Dict[str, Any]) -> List[str]:
    return [t["name"] for t in manifest["outputs"]]
