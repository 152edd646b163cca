"""Two artifacts measured interleaved on one device: the measurement of a baseline comparison.

A fresh CI runner has no history of its own noise, and a baseline measured on another day (a
saved report.json) carries that day's speed: on a shared machine the same artifact ran 5.7 ms,
11.3 ms and 7 ms within an hour (docs/gate.md, Stability). Measuring the baseline and the
candidate in the same minutes, round for round, takes that drift out of the comparison: pair
i is one round of each, back to back (each a fresh runner process with one round's share of
``[profile]``), and which of the two runs first is drawn by a fair coin per pair. The coin is
what makes the sign-flip test of the comparison exact (edgeship.measure.stats.sign_flip_pvalue):
under "the two are the same artifact" every order was as likely, whatever the machine did.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeship.artifact.selection import ArtifactRef, find_artifacts
from edgeship.config import Config
from edgeship.devices.base import open_device
from edgeship.errors import UsageError
from edgeship.measure.inputs import profiling_inputs
from edgeship.measure.profile import profile_artifact
from edgeship.measure.rounds import round_plan


@dataclass(frozen=True)
class Pair:
    """One round of each artifact, back to back."""

    baseline_ns: tuple[int, ...]
    candidate_ns: tuple[int, ...]
    candidate_first: bool

    def log_ratio(self) -> float:
        """log(candidate median / baseline median): > 0 when the candidate was slower."""
        return float(np.log(np.median(self.candidate_ns) / np.median(self.baseline_ns)))


# (device, baseline artifact, candidate artifact, pairs) -> the pairs measured
Interleave = Callable[[str, ArtifactRef, ArtifactRef, int], list[Pair]]


def baseline_artifacts(cfg: Config, path: Path) -> dict[str, ArtifactRef]:
    """The baseline build's artifacts of this model, by name: ``path`` is that build's folder
    (holding ``artifacts/<model>/``) or its ``artifacts/<model>/`` folder itself. Each is read
    and verified against its manifest like the candidate's."""
    path = Path(path).resolve()
    model = cfg.model.name
    if (path / "artifacts" / model).is_dir():
        build = path
    elif path.name == model and path.parent.name == "artifacts":
        build = path.parent.parent
    else:
        raise UsageError(f"--baseline {path}: no artifacts/{model}/ there; pass the baseline build's build/ folder "
                         f"or its artifacts/{model}/ folder (or a report.json)")
    refs = find_artifacts(cfg.model_copy(update={"build_dir": build}), None, None)
    if not refs:
        raise UsageError(f"--baseline {path}: no readable artifact of {model} in {build / 'artifacts' / model}")
    return {r.name: r for r in refs}


def interleaved(cfg: Config, rng: np.random.Generator | None = None,
                say: Callable[[str], None] | None = None) -> Interleave:
    """Measure pairs on a device reached from this process (local, ssh, adb)."""
    rng = rng or np.random.default_rng()     # fresh entropy: the order must not be predictable
    say = say or (lambda _m: None)

    def measure(device: str, base: ArtifactRef, cand: ArtifactRef, pairs: int) -> list[Pair]:
        inputs = profiling_inputs(cfg)
        out = []
        with open_device(device, cfg) as dev:
            plan = round_plan(cfg, dev.kind, rounds=cfg.gate.compare_pairs)
            for i in range(pairs):
                cand_first = bool(rng.integers(0, 2))
                say(f"compare {cand.name} with the baseline on {device} (pair {i + 1}/{pairs}) ...")
                got = {}
                for which, ref in ((("candidate", cand), ("baseline", base)) if cand_first
                                   else (("baseline", base), ("candidate", cand))):
                    r = profile_artifact(plan.cfg, dev, ref, inputs=inputs)
                    samples = (r.get("timing") or {}).get("samples_ns") or []
                    if r.get("status") != "ok" or not samples:
                        raise UsageError(f"device '{device}', artifact {ref.name}: no latency samples to compare "
                                         f"({r.get('skip_reason') or 'aggregates only'})")
                    got[which] = tuple(int(s) for s in samples)
                out.append(Pair(got["baseline"], got["candidate"], cand_first))
        return out

    return measure
