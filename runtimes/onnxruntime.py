"""ONNX Runtime (CPU execution provider). Standalone: numpy + onnxruntime only."""

from typing import Any, Dict

import numpy as np

from .base import Runtime, RuntimeUnavailable, register


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
        self._session = ort.InferenceSession(self.model_path, so, providers=["CPUExecutionProvider"])
        self._out_names = [o.name for o in self._session.get_outputs()]

    def _invoke(self, prepared: Dict[str, np.ndarray]) -> Any:
        return self._session.run(self._out_names, prepared)

    def _outputs(self, raw: Any) -> Dict[str, np.ndarray]:
        names = [t["name"] for t in self.manifest["outputs"]]
        return dict(zip(names, raw))

    @classmethod
    def version(cls) -> str:
        return str(_ort().__version__)

    def describe(self) -> Dict[str, Any]:
        d = super().describe()
        d["providers"] = self._session.get_providers()
        d["graph_optimization_level"] = self.options.get("graph_optimization_level", "all")
        return d
