"""LiteRT (TFLite) interpreter. Standalone: numpy + one of ai-edge-litert, tflite-runtime, tensorflow.

The same file runs on a Raspberry Pi that has only tflite-runtime. XNNPACK is the default CPU
delegate of all three; the thread count is passed to the interpreter.
"""

import re
from typing import Any, Dict, List, Tuple

import numpy as np

from .base import Runtime, RuntimeUnavailable, narrow, register

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
        self._it = mod.Interpreter(model_path=self.model_path, num_threads=self.threads)
        self._it.allocate_tensors()
        self._in_details = self._map(self._it.get_input_details(), [t["name"] for t in self.manifest["inputs"]], "args_")
        self._out_details = self._map(self._it.get_output_details(), [t["name"] for t in self.manifest["outputs"]], "output_")
        self._check_quantization()

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
