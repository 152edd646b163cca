"""What the gate decides: one CheckResult per check, and the GateReport of a run.

Its own module so that the decisions (judge.py) and the baseline comparison (baseline.py) share
the type without importing each other.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from edgeship.gating.budgets import Check
from edgeship.types import Evidence, Verdict


@dataclass(frozen=True)
class CheckResult:
    check: Check
    verdict: Verdict
    passed: bool
    value: float | None = None
    low: float | None = None
    high: float | None = None
    detail: str = ""
    rounds: dict[str, Any] | None = None   # latency: the per-round statistic (count, values, min, max, cv)
    rerun: str = ""     # the command that refreshes missing or stale evidence
    evidence: Evidence = Evidence.DEVICE   # how ``value`` was obtained (docs/gate.md, "The evidence chain")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self.check)
        d.update(name=self.check.name, verdict=self.verdict.value, passed=self.passed, value=self.value,
                 low=self.low, high=self.high, detail=self.detail, rerun=self.rerun, rounds=self.rounds,
                 evidence=self.evidence.value)
        return d


@dataclass(frozen=True)
class GateReport:
    checks: tuple[CheckResult, ...]
    report: dict[str, Any] = field(repr=False)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def exit_code(self) -> int:
        return 0 if self.passed else 1
