"""The compress-step contract and registry.

A step takes the current student (an ``nn.Module``, FP32, eval mode) and returns the next
one; ``apply`` validates and ``_apply`` transforms, like exporters. What a step decided
(layers touched, ranks, epochs run) goes into the returned record, which lands in the
compressed manifest.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from edgeship.registry import Registry

STEPS: Registry[type[Step]] = Registry("compress step", "edgeship.compress.steps")


@dataclass
class Context:
    """What every step may use; data is loaded lazily and only once."""

    teacher: Any                                   # the original FP32 model (never modified)
    example: tuple[Any, ...]                       # torch example args, batch of the input spec
    input_names: tuple[str, ...]
    seed: int
    train: Callable[[], tuple[dict[str, np.ndarray], np.ndarray | None]] | None   # stacked inputs, labels
    evaluation: Callable[[], tuple[dict[str, np.ndarray], np.ndarray | None]]
    say: Callable[[str], None] = lambda _m: None
    train_ref: str | None = None                   # as written in [data] train, for messages


@dataclass
class StepResult:
    model: Any
    record: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


class Step(ABC):
    kind: ClassVar[str]

    def __init__(self, cfg: Any, index: int) -> None:
        self.cfg = cfg            # the step's typed config (PruneStep, ...)
        self.index = index

    @property
    def key(self) -> str:
        return f"compress.steps[{self.index}]"

    def check(self, ctx: Context) -> None:
        """Reject an impossible request before any work (UsageError/ConfigError)."""

    def apply(self, model: Any, ctx: Context) -> StepResult:
        res = self._apply(model, ctx)
        res.model.eval()
        return res

    def rebuild(self, model: Any, record: dict[str, Any], example: tuple[Any, ...]) -> Any:
        """Give ``model`` (the original architecture) this step's shapes, as ``record`` says.

        Weights do not matter: the saved ones are loaded afterwards. Steps that only change
        weights (distill, weights4) keep this default.
        """
        return model

    @abstractmethod
    def _apply(self, model: Any, ctx: Context) -> StepResult:
        """Return the compressed model (may modify ``model`` in place; the teacher is separate)."""


def get_step(cfg: Any, index: int) -> Step:
    return STEPS.get(cfg.kind)(cfg, index)
