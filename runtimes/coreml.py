"""CoreML via coremltools' MLModel.predict: macOS only. Standalone: numpy + coremltools.

On any other OS loading raises RuntimeUnavailable, so eval/profile mark CoreML artifacts
SKIPPED with the reason instead of failing. Compute units are selectable with the runtime
option ``compute_units`` (CPU_ONLY, CPU_AND_GPU, CPU_AND_NE, ALL); without it, the value the
exporter recorded from ``[targets.coreml] compute_units`` (manifest recipe), else CPU_ONLY.
Nothing here assumes Linux: the runner reads macOS memory from ru_maxrss (bytes there).
"""

import platform
import sys
from typing import Any, Dict

import numpy as np

from .base import Runtime, RuntimeUnavailable, register

COMPUTE_UNITS = ("CPU_ONLY", "CPU_AND_GPU", "CPU_AND_NE", "ALL")


def _coremltools() -> Any:
    if sys.platform != "darwin":
        raise RuntimeUnavailable("CoreML runs only on macOS (this is %s); profile on a Mac over ssh"
                                 % (platform.system() or sys.platform))
    try:
        import coremltools
    except ModuleNotFoundError as exc:
        if exc.name == "coremltools":
            raise RuntimeUnavailable("coremltools is not installed: pip install coremltools") from None
        raise
    return coremltools


@register("coreml")
class CoreMLRuntime(Runtime):
    def _load(self) -> None:
        ct = _coremltools()
        recorded = (self.manifest.get("recipe") or {}).get("compute_units", "CPU_ONLY")
        units = str(self.options.get("compute_units", recorded)).upper()
        if units not in COMPUTE_UNITS:
            raise ValueError("compute_units %r is not one of %s" % (units, ", ".join(COMPUTE_UNITS)))
        self._units = units
        self._model = ct.models.MLModel(self.model_path, compute_units=getattr(ct.ComputeUnit, units))

    def _prepare(self, feeds: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        return {k: np.ascontiguousarray(v) for k, v in feeds.items()}

    def _invoke(self, prepared: Dict[str, np.ndarray]) -> Dict[str, Any]:
        return self._model.predict(prepared)

    def _outputs(self, raw: Dict[str, Any]) -> Dict[str, np.ndarray]:
        return {t["name"]: np.asarray(raw[t["name"]]) for t in self.manifest["outputs"]}

    @classmethod
    def version(cls) -> str:
        return str(_coremltools().__version__)

    def describe(self) -> Dict[str, Any]:
        d = super().describe()
        d["compute_units"] = self._units
        return d
