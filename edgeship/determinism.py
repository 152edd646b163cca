"""Deterministic torch training: the same weights every run (the demo's trainer, distill)."""

from __future__ import annotations

from typing import Any


class deterministic:
    def __init__(self, torch: Any) -> None:
        self.torch = torch

    def __enter__(self) -> None:
        self.prev = self.torch.are_deterministic_algorithms_enabled()
        self.threads = self.torch.get_num_threads()
        self.torch.use_deterministic_algorithms(True)
        self.torch.set_num_threads(1)   # reductions in a fixed order: same weights every run

    def __exit__(self, *exc: object) -> None:
        self.torch.use_deterministic_algorithms(self.prev)
        self.torch.set_num_threads(self.threads)
