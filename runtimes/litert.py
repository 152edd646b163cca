"""LiteRT (TFLite) interpreter. Standalone: numpy + one of ai-edge-litert, tflite-runtime, tensorflow.

The same file runs on a Raspberry Pi that has only tflite-runtime. XNNPACK is the default CPU
delegate of all three; the thread count is passed to the interpreter.
"""

import re
from typing import Any, Dict, List, Tuple

import numpy as np

from .base import NotReported, Runtime, RuntimeUnavailable, narrow, register

NO_OP_TIMES = ("the LiteRT Python interpreter exposes no per-op timing (its op profiler is C++ only); on a phone "
               "run benchmark_model --enable_op_profiling=true")

_CANDIDATES = (
    ("ai_edge_litert.interpreter", "ai-edge-litert"),
    ("tflite_runtime.interpreter", "tflite-runtime"),
    ("tensorflow.lite", "tensorflow"),
)


def _interpreter_module() -> Tuple[Any, str]:
    import importlib

    for module, dist in _CANDIDATES:
        try:
            return importlib.import_module(module), dist
        except ModuleNotFoundError as exc:
            if exc.name and module.startswith(exc.name.split(".")[0]):
                continue
            raise
    raise RuntimeUnavailable("no LiteRT interpreter: pip install ai-edge-litert (or tflite-runtime on a board)")


@register("litert")
class LiteRTRuntime(Runtime):
    def _load(self) -> None:
        mod, self._dist = _interpreter_module()
        self._it = self._open(mod, False)
        self._in_details = self._map(self._it.get_input_details(), [t["name"] for t in self.manifest["inputs"]], "args_")
        self._out_details = self._map(self._it.get_output_details(), [t["name"] for t in self.manifest["outputs"]], "output_")
        self._check_quantization()
        self._keep = None  # type: Any

    def _open(self, mod: Any, keep: bool) -> Any:
        kw = {"experimental_preserve_all_tensors": True} if keep else {}
        it = mod.Interpreter(model_path=self.model_path, num_threads=self.threads, **kw)
        it.allocate_tensors()
        return it

    def _check_quantization(self) -> None:
        """The manifest's int8 I/O parameters must be the model's own (else the feeds are off-scale)."""
        pairs = list(zip(self.manifest["inputs"], self._in_details)) + list(zip(self.manifest["outputs"], self._out_details))
        for spec, d in pairs:
            q = spec.get("quantization")
            if not q:
                continue
            scale, zero = d["quantization"]
            if np.dtype(d["dtype"]).name != spec.get("dtype") or int(zero) != int(q["zero_point"]) \
                    or abs(float(scale) - float(q["scale"])) > 1e-6 * max(abs(float(scale)), 1e-12):
                raise ValueError("tensor %r: manifest says %s scale=%s zero_point=%s, the model has %s scale=%s zero_point=%s"
                                 % (spec["name"], spec.get("dtype"), q["scale"], q["zero_point"],
                                    np.dtype(d["dtype"]).name, scale, zero))

    def _map(self, details: List[Dict[str, Any]], names: List[str], prefix: str) -> List[Dict[str, Any]]:
        """Order tensors like the manifest: by the configured names edgeship gives them, else
        (older artifacts) by litert-torch's <sig>_args_<i> / <sig>_output_<i> numbering."""
        if len(details) != len(names):
            raise ValueError("artifact has %d tensors, manifest lists %d" % (len(details), len(names)))
        by_name = {d["name"]: d for d in details}
        if all(n in by_name for n in names):
            return [by_name[n] for n in names]
        by_index = {}
        for d in details:
            m = re.search(re.escape(prefix) + r"(\d+)", d["name"])
            if m:
                by_index[int(m.group(1))] = d
        if len(by_index) == len(details):
            return [by_index[i] for i in range(len(details))]
        return list(details)

    def _prepare(self, feeds: Dict[str, np.ndarray]) -> None:
        casts = (self.manifest.get("recipe") or {}).get("input_casts") or {}
        for spec, d in zip(self.manifest["inputs"], self._in_details):
            arr = feeds[spec["name"]]
            scale, zero = d["quantization"]
            want = np.dtype(d["dtype"])
            if scale and want.kind in "iu" and arr.dtype.kind == "f":
                info = np.iinfo(want)
                arr = np.clip(np.round(arr / scale) + zero, info.min, info.max)
            elif arr.dtype != want:
                # only the narrowing the converter did (recorded at export), and only values that fit
                arr = narrow(arr, spec["name"], want, casts.get(spec["name"]))
            self._it.set_tensor(d["index"], np.ascontiguousarray(arr, dtype=want))

    def _invoke(self, prepared: Any) -> None:
        self._it.invoke()

    def _outputs(self, raw: Any) -> Dict[str, np.ndarray]:
        out = {}
        for spec, d in zip(self.manifest["outputs"], self._out_details):
            arr = self._it.get_tensor(d["index"])
            scale, zero = d["quantization"]
            if scale and arr.dtype.kind in "iu":
                arr = (arr.astype(np.float32) - zero) * scale
            out[spec["name"]] = arr
        return out

    @classmethod
    def op_times_reason(cls) -> str:
        return NO_OP_TIMES

    def op_times(self) -> List[Tuple[str, str, int]]:
        raise NotReported(NO_OP_TIMES)

    def intermediates(self, feeds: Dict[str, np.ndarray]) -> List[Dict[str, Any]]:
        """A second interpreter of the same file in preserve-all-tensors mode (every tensor
        kept after invoke): each op's output as the op left it, in execution order."""
        import warnings

        if self._keep is None:
            mod, _ = _interpreter_module()
            with warnings.catch_warnings():   # it warns that the mode is for debugging: that is the point
                warnings.simplefilter("ignore")
                self._keep = self._open(mod, True)
        shipped = self._it
        try:
            self._it = self._keep            # _prepare/_outputs address self._it
            self.prepare(feeds)             # validates, then sets the inputs of self._it
            self._keep.invoke()
            finals = self.finish(None)
        finally:
            self._it = shipped
        details = {d["index"]: d for d in self._keep.get_tensor_details()}
        ops = getattr(self._keep, "_get_ops_details", None)
        if ops is None:
            raise NotReported("this LiteRT interpreter (%s) does not list its ops" % self._dist)
        out, seen = [], set()
        for op in ops():
            if op.get("op_name") == "DELEGATE":   # a delegate's node repeats the ops it took over
                continue
            for t in op.get("outputs", []):
                t = int(t)
                if t < 0 or t in seen or t not in details:
                    continue
                seen.add(t)
                d = details[t]
                scale, zero = d["quantization"]
                arr = np.array(self._keep.get_tensor(t))
                q = {"scale": float(scale), "zero_point": int(zero)} if scale and arr.dtype.kind in "iu" else None
                out.append({"name": d["name"], "node": "%s:%d" % (op.get("op_name"), op.get("index")),
                            "op_type": str(op.get("op_name")), "array": arr, "quantization": q})
        return out + [{"name": n, "output": True, "array": a} for n, a in finals.items()]

    @classmethod
    def version(cls) -> str:
        _mod, dist = _interpreter_module()
        try:
            from importlib.metadata import version

            return "%s %s" % (dist, version(dist))
        except Exception:  # noqa: BLE001  importlib.metadata can be absent/broken on a minimal board python
            return dist

    def describe(self) -> Dict[str, Any]:
        d = super().describe()
        d["interpreter"] = self._dist
        d["delegate"] = "XNNPACK (default CPU delegate)"
        return d
