"""The accuracy budget an INT8 artifact must meet at export time, and how it is measured.

The budget is the strictest of ``[quantization] max_drop`` / ``min_cosine`` and every
``[[budgets]]`` entry whose target and precision match the artifact and whose device is
"*" or one of the devices the artifact is built for (``CpuTarget.devices``). Cosine is the
mean over samples (what the gate judges); the drop is top-1 accuracy of the FP32 model the
artifact was exported from minus the artifact's, on the evaluation set when it has labels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from edgeship.config import Config


@dataclass(frozen=True)
class AccuracyBudget:
    max_drop: float | None = None
    min_cosine: float | None = None
    sources: tuple[str, ...] = field(default=())

    def met(self, score: dict[str, Any]) -> bool:
        if self.min_cosine is not None and not score["cosine_mean"] >= self.min_cosine:
            return False
        drop = score.get("accuracy_drop")
        return self.max_drop is None or drop is None or drop <= self.max_drop

    def describe(self) -> str:
        parts = []
        if self.max_drop is not None:
            parts.append(f"max drop {100 * self.max_drop:.1f} pt")
        if self.min_cosine is not None:
            parts.append(f"min cosine {self.min_cosine:g}")
        return " and ".join(parts)

    def to_json(self) -> dict[str, Any]:
        return {"max_drop": self.max_drop, "min_cosine": self.min_cosine, "from": list(self.sources)}


def describe_score(score: dict[str, Any], budget: AccuracyBudget) -> str:
    """The measured numbers the budget is about, e.g. '2.4 pt' or 'cosine 0.9921'."""
    parts = []
    if budget.max_drop is not None and score.get("accuracy_drop") is not None:
        parts.append(f"{100 * score['accuracy_drop']:.1f} pt")
    if budget.min_cosine is not None or not parts:
        parts.append(f"cosine {score['cosine_mean']:.4f}")
    return ", ".join(parts)


def applicable_budget(cfg: Config, target: str, precision: str, devices: Sequence[str]) -> AccuracyBudget | None:
    """The strictest accuracy budget that applies to ``target``-``precision`` built for ``devices``."""
    q = cfg.quantization
    drops: list[float] = []
    cosines: list[float] = []
    sources: list[str] = []
    if q.max_drop is not None or q.min_cosine is not None:
        drops += [q.max_drop] if q.max_drop is not None else []
        cosines += [q.min_cosine] if q.min_cosine is not None else []
        sources.append("[quantization]")
    for i, b in enumerate(cfg.budgets):
        if b.target not in ("*", target) or b.precision not in ("*", precision):
            continue
        if b.device != "*" and b.device not in devices:
            continue
        if b.max_accuracy_drop is None and b.min_cosine is None:
            continue
        drops += [b.max_accuracy_drop] if b.max_accuracy_drop is not None else []
        cosines += [b.min_cosine] if b.min_cosine is not None else []
        sources.append(f"[[budgets]] #{i + 1}")
    if not sources:
        return None
    return AccuracyBudget(min(drops) if drops else None, max(cosines) if cosines else None, tuple(sources))
