"""String enums shared by config, exporters, runtimes and reports.

Strings from TOML or the command line are converted to these once, at the edge.
"""

from __future__ import annotations

from enum import Enum


class _StrEnum(str, Enum):
    def __str__(self) -> str:
        return self.value


class Target(_StrEnum):
    ONNX = "onnx"
    TFLITE = "tflite"
    COREML = "coreml"


class Precision(_StrEnum):
    FP32 = "fp32"
    FP16 = "fp16"
    INT8 = "int8"                    # static: weights and activations, calibrated
    INT8_DYNAMIC = "int8-dynamic"    # int8 weights, activations quantized at run time
    INT8_WEIGHT = "int8-weight"      # weight-only int8, float compute
    INT4_WEIGHT = "int4-weight"      # weight-only 4-bit blocks (onnx MatMulNBits), float compute; opt-in

    @property
    def opt_in(self) -> bool:
        """Exported only when listed in [targets.X] precisions or asked for with --precision."""
        return self is Precision.INT4_WEIGHT

    @property
    def is_int8(self) -> bool:
        return self.value.startswith("int8")


class CalibrationMethod(_StrEnum):
    MINMAX = "minmax"
    PERCENTILE = "percentile"
    ENTROPY = "entropy"


class QuantType(_StrEnum):
    AUTO = "auto"     # chosen per target CPU by the exporter; the choice lands in the manifest
    INT8 = "int8"
    UINT8 = "uint8"


class IOType(_StrEnum):
    FLOAT = "float"
    INT8 = "int8"


class Verdict(_StrEnum):
    PASS = "PASS"
    FAIL = "FAIL"
    MARGINAL = "MARGINAL"
    SKIPPED = "SKIPPED"


class Evidence(_StrEnum):
    """How a gated number was obtained (docs/gate.md, "The evidence chain"). Every kind that has a
    number is judged and can FAIL; emulated and simulated numbers decide fidelity, never latency
    or memory, and a verdict from them says so in every report."""

    DEVICE = "device"          # the runner on the device (profile; eval --device)
    HOST = "host"              # in-process on this host (eval without --device; size from the artifact's files)
    EMULATED = "emulated"      # the real runtime under qemu-user on an emulated board: numerics only
    SIMULATED = "simulated"    # CoreML W8A8 simulated in torch at export (the manifest's torch_simulation)
    NONE = "none"              # no number: missing, stale, failed or skipped evidence

    @property
    def labelled(self) -> bool:
        """Whether a verdict from it carries the kind (numbers not from the artifact on its hardware)."""
        return self in (Evidence.EMULATED, Evidence.SIMULATED)


class OutputKind(_StrEnum):
    """What a model output is, which decides the metrics eval reports for it."""

    CLASSIFICATION = "classification"   # logits/scores over classes: top-1 agreement, accuracy vs labels
    EMBEDDING = "embedding"             # a vector compared by cosine: nearest-neighbour retrieval agreement
    REGRESSION = "regression"           # values: max abs error, SNR
