"""ONNX Runtime (CPU execution provider). Standalone: numpy + onnxruntime only."""

import hashlib
import json
import os
from typing import Any, Dict, List, Tuple

import numpy as np

from .base import Runtime, RuntimeLoadError, RuntimeUnavailable, register

KERNEL = "_kernel_time"   # ORT's profiler names a node's compute event "<node>_kernel_time"


def _ort() -> Any:
    try:
        import onnxruntime
    except ModuleNotFoundError as exc:
        if exc.name == "onnxruntime":
            raise RuntimeUnavailable("onnxruntime is not installed: pip install onnxruntime") from None
        raise
    return onnxruntime


@register("onnxruntime")
class OnnxRuntime(Runtime):
    def _load(self) -> None:
        self._session = self._open(self.model_path, profile=bool(self.options.get("op_profile")))
        self._out_names = [o.name for o in self._session.get_outputs()]
        self._debug = None  # type: Any

    def _open(self, path: str, profile: bool = False) -> Any:
        ort = _ort()
        so = ort.SessionOptions()
        so.intra_op_num_threads = self.threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        # Threads must not spin between runs, or a 1-thread budget would burn a 2nd core.
        so.add_session_config_entry("session.intra_op.allow_spinning", "0" if self.threads == 1 else "1")
        level = self.options.get("graph_optimization_level", "all")
        so.graph_optimization_level = {
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        }[level]
        if profile:
            # per-node events of every run, written by ORT when the session ends profiling
            so.enable_profiling = True
            so.profile_file_prefix = str(self.options["op_profile"])
        return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])

    def _invoke(self, prepared: Dict[str, np.ndarray]) -> Any:
        return self._session.run(self._out_names, prepared)

    def _outputs(self, raw: Any) -> Dict[str, np.ndarray]:
        names = [t["name"] for t in self.manifest["outputs"]]
        return dict(zip(names, raw))

    @classmethod
    def version(cls) -> str:
        return str(_ort().__version__)

    @classmethod
    def op_times_reason(cls) -> None:
        return None

    def op_times(self) -> List[Tuple[str, str, int]]:
        """The session's profile (SessionOptions.enable_profiling): one "Node" event per
        kernel run, ``dur`` in microseconds; the profile file is read and removed here."""
        path = self._session.end_profiling()
        try:
            with open(path) as fh:
                events = json.load(fh)
        finally:
            if path and os.path.exists(path):
                os.unlink(path)
        out = []
        for e in events if isinstance(events, list) else events.get("traceEvents", []):
            name = e.get("name", "")
            if e.get("cat") == "Node" and name.endswith(KERNEL):
                args = e.get("args") or {}
                out.append((name[:-len(KERNEL)], str(args.get("op_name", "?")), round(float(e["dur"]) * 1000)))
        return out

    def intermediates(self, feeds: Dict[str, np.ndarray]) -> List[Dict[str, Any]]:
        """Runs the debug copy edgeship built from the shipped model (``options["debug_model"]``,
        the same graph with the layers' tensors added as outputs), after checking its sha256
        against ``options["debug_sha256"]`` (the digest recorded next to the shipped one)."""
        if self._debug is None:
            path = str(self.options.get("debug_model") or "")
            if not path or not os.path.isfile(path):
                raise RuntimeLoadError("onnxruntime: intermediate tensors need the debug copy of the model; none at %r" % path)
            h = hashlib.sha256()
            with open(path, "rb") as fh:
                h.update(fh.read())
            if h.hexdigest() != self.options.get("debug_sha256"):
                raise RuntimeLoadError("%s: sha256 does not match the debug copy edgeship built; re-run the command" % path)
            self._debug = self._open(path)
        names = [o.name for o in self._debug.get_outputs()]
        arrays = self._debug.run(names, self.prepare(feeds))
        shipped = set(self._out_names)
        out = [{"name": n, "array": np.asarray(a)} for n, a in zip(names, arrays) if n not in shipped]
        finals = self.finish([arrays[names.index(n)] for n in self._out_names])
        return out + [{"name": n, "output": True, "array": a} for n, a in finals.items()]

    def describe(self) -> Dict[str, Any]:
        d = super().describe()
        d["providers"] = self._session.get_providers()
        d["graph_optimization_level"] = self.options.get("graph_optimization_level", "all")
        return d
