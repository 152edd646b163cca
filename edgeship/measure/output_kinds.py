"""Each model output's kind, which decides the metrics eval reports for it.

``[model] output_kinds = { embedding = "embedding" }`` names the kind of an output; an output
not named there is inferred from the FP32 reference's outputs on the evaluation set, and the
reason is recorded in every eval entry (``outputs.<name>.kind_from``) so the choice is visible:

- an integer output, one value per sample, a last axis of size 1, or a dense map of 4 or
  more dimensions: ``regression`` (top-1 over such an axis means nothing);
- a last axis whose vectors have unit L2 norm in every sample: ``embedding`` (an L2-normalised
  encoder output; logits or probabilities are not unit vectors);
- otherwise (a last axis of C > 1 scores, e.g. (1, C) logits, or (1, T, C) per-step logits):
  ``classification``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from edgeship.errors import ConfigError
from edgeship.types import OutputKind

UNIT_NORM_TOL = 1e-3


@dataclass(frozen=True)
class OutputInfo:
    name: str
    kind: OutputKind
    kind_from: str       # "configured", or "inferred: <why>"


def output_kinds(configured: dict[str, OutputKind], names: Sequence[str],
                 reference: Sequence[Sequence[np.ndarray]]) -> list[OutputInfo]:
    """One OutputInfo per output of the reference (named by ``names`` in order)."""
    count = len(reference[0]) if reference else len(names)
    out = []
    for i in range(count):
        name = names[i] if i < len(names) else f"output{i}"
        if name in configured:
            kind = OutputKind(configured[name])
            shape = list(np.shape(reference[0][i])) if reference else []
            if kind is OutputKind.CLASSIFICATION and (not shape or shape[-1] < 2):
                raise ConfigError(f"key 'model.output_kinds.{name}': a classification output needs a last axis of "
                                  f"2 or more class scores, the model returns shape {shape}; use \"regression\"")
            out.append(OutputInfo(name, kind, "configured"))
        else:
            kind, why = infer_kind([np.asarray(s[i]) for s in reference])
            out.append(OutputInfo(name, kind, f"inferred: {why}"))
    return out


def infer_kind(samples: Sequence[np.ndarray]) -> tuple[OutputKind, str]:
    """(kind, why) of one output from its per-sample reference arrays."""
    a = samples[0]
    if not np.issubdtype(a.dtype, np.floating):
        return OutputKind.REGRESSION, f"{a.dtype} values"
    if a.size <= 1 or a.shape[-1] == 1:
        return OutputKind.REGRESSION, f"one value per sample (shape {list(a.shape)})"
    if a.ndim >= 4:
        return OutputKind.REGRESSION, f"a dense {a.ndim}-D map (shape {list(a.shape)})"
    norms = np.concatenate([np.linalg.norm(np.asarray(s, np.float64).reshape(-1, a.shape[-1]), axis=1) for s in samples])
    if np.all(np.abs(norms - 1.0) <= UNIT_NORM_TOL):
        return OutputKind.EMBEDDING, f"unit L2-norm vectors of {a.shape[-1]} (shape {list(a.shape)})"
    return OutputKind.CLASSIFICATION, f"{a.shape[-1]} scores on the last axis (shape {list(a.shape)})"
