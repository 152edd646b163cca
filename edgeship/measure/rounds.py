"""Rounds: a latency measurement is R independent runner processes, not one.

The samples of one process are not independent (CPU frequency, caches, co-tenants persist for
its whole life), so a confidence interval over them is far too narrow: the run, not the
sample, is the unit of noise (pyperf workers, criterion, asv). ``profile`` therefore runs R
rounds per artifact, each a fresh runner process with its own load, warmup and samples,
interleaved across artifacts (round 1 of A, B, C, then round 2 ...), so a slow spell of the
machine hits every artifact alike. The per-run budgets of ``[profile]`` are split across the
rounds, so the total time stays close to one long run's (plus one process start per round).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from edgeship.config import Config

# Default rounds per device kind when ``[profile] rounds`` is not set. Remote boards pay a
# process start (python + numpy + runtime imports: seconds on a Pi) and a bundle push per
# round; phones re-push the native tool and the model each run.
DEFAULT_ROUNDS = {"local": 5, "ssh": 3, "adb": 3}


@dataclass(frozen=True)
class RoundPlan:
    rounds: int
    cfg: Config        # ``cfg`` with ``[profile]`` cut to one round's share (same digest)


def round_plan(cfg: Config, kind: str, min_runs: int | None = None, min_seconds: float | None = None,
               rounds: int | None = None) -> RoundPlan:
    """How many rounds, and the per-round ``[profile]`` settings.

    ``min_runs``/``min_seconds`` are TOTALS over all rounds (as ``[profile]`` is): each round
    gets ceil(min_runs / R) runs (so R rounds together still meet min_runs, and with it the
    64 samples p90 needs), min_seconds / R, warmup_seconds / R (warmup_runs stays whole: every
    fresh process needs its own warmup), and max_seconds / max_runs divided likewise.
    """
    p = cfg.profile
    r = rounds or p.rounds or DEFAULT_ROUNDS.get(kind, 3)
    total_runs = p.min_runs if min_runs is None else min_runs
    total_secs = p.min_seconds if min_seconds is None else min_seconds
    per = p.model_copy(update={
        "min_runs": max(1, math.ceil(total_runs / r)),
        "min_seconds": total_secs / r,
        "warmup_seconds": p.warmup_seconds / r,
        "max_seconds": p.max_seconds / r,
        "max_runs": math.ceil(p.max_runs / r) if p.max_runs else 0,
    })
    # model_copy keeps the config digest: a round's settings are not a different config
    return RoundPlan(r, cfg.model_copy(update={"profile": per}))


def round_entry(result: dict[str, Any]) -> dict[str, Any]:
    """One round of a result's ``timing.rounds``: its samples (or a native tool's aggregates)
    with its own load and first-inference times."""
    t = result["timing"]
    entry: dict[str, Any] = {"samples_ns": list(t.get("samples_ns") or []), "load_ns": t.get("load_ns"),
                             "first_ns": t.get("first_ns"), "capped": bool(t.get("capped"))}
    # the runner's CPU vs wall time of its measured loop, and the system's CPU pressure over it
    for key in ("cpu_ns", "wall_ns", "cpu_pressure_ns"):
        if isinstance(t.get(key), int):
            entry[key] = t[key]
    if t.get("aggregate") is not None:
        entry["aggregate"] = t["aggregate"]
    return entry


def merge_rounds(results: list[dict[str, Any]]) -> dict[str, Any]:
    """One result from the per-round results of one artifact (each validated already).

    ``timing.samples_ns`` is every round's samples concatenated (for readers that predate
    rounds); ``timing.rounds`` keeps them apart. load/first of the result are round 1's (the
    coldest start, as a single run reported before); memory peaks are the max over rounds.
    """
    first = results[0]
    if first.get("status") != "ok":
        return first
    merged = dict(first)
    rounds = [round_entry(r) for r in results]
    timing = dict(first["timing"])
    timing["samples_ns"] = [s for e in rounds for s in e["samples_ns"]]
    timing["capped"] = any(e["capped"] for e in rounds)
    timing["rounds"] = rounds
    aggs = [e["aggregate"] for e in rounds if "aggregate" in e]
    if aggs:
        timing["aggregate"] = merge_aggregates(aggs)
    merged["timing"] = timing
    mem = dict(first.get("memory") or {})
    for key in ("init_peak_kb", "steady_peak_kb"):
        peaks = [v for v in ((r.get("memory") or {}).get(key) for r in results) if isinstance(v, (int, float))]
        if peaks:
            mem[key] = max(peaks)
    merged["memory"] = mem
    merged["settings"] = {**(first.get("settings") or {}), "rounds": len(results)}
    return merged


def merge_aggregates(aggs: list[dict[str, Any]]) -> dict[str, Any]:
    """Aggregates printed by a native tool in each round, combined: percentiles and mean are the
    median over rounds (percentiles cannot be pooled without the samples), count the sum,
    min/max the extremes, labels kept when the rounds agree."""
    import numpy as np

    out: dict[str, Any] = {}
    for key in sorted({k for a in aggs for k in a}):
        vals = [a[key] for a in aggs if isinstance(a.get(key), (int, float)) and not isinstance(a.get(key), bool)]
        if not vals:   # labels ("unit", "source"): kept when every round agrees
            labels = [a.get(key) for a in aggs]
            out[key] = labels[0] if all(v == labels[0] for v in labels) else None
        elif key == "count":
            out[key] = int(sum(vals))
        elif key == "min":
            out[key] = min(vals)
        elif key == "max":
            out[key] = max(vals)
        else:
            out[key] = float(np.median(vals))
    return out


def timing_rounds(timing: dict[str, Any] | list[int]) -> list[list[int]]:
    """The per-round sample lists of a timing block; a result from before rounds (or a bare
    sample list) is one round."""
    if isinstance(timing, list):
        return [list(timing)] if timing else []
    rounds = [list(e.get("samples_ns") or []) for e in (timing.get("rounds") or [])]
    rounds = [r for r in rounds if r]
    if rounds:
        return rounds
    samples = list(timing.get("samples_ns") or [])
    return [samples] if samples else []


def keep_rounds(timing: dict[str, Any], rounds: list[list[int]]) -> None:
    """Write the rounds a verdict used back into a timing block (re-measured rounds included)."""
    old = timing.get("rounds") or []
    entries = []
    for i, r in enumerate(rounds):
        if i < len(old):
            e = dict(old[i])
        elif i == 0:   # a result from before rounds: its one run is round 1
            e = {"load_ns": timing.get("load_ns"), "first_ns": timing.get("first_ns")}
        else:
            e = {"load_ns": None, "first_ns": None, "remeasured": True}
        e["samples_ns"] = list(r)
        entries.append(e)
    timing["rounds"] = entries
    timing["samples_ns"] = [s for r in rounds for s in r]


# The invoking thread is runnable for the whole measured loop, so a runner that got less CPU
# time than this share of the loop's wall time was descheduled: co-tenants slowed every sample.
# On a shared machine such a slow spell can last a whole profile (all rounds alike, so the
# rounds cannot show it); a FAIL measured under it is not trusted (a PASS still is), and the
# session does not teach the device's noise (edgeship/measure/sessions.py).
CONTENDED_SHARE = 0.9


def cpu_shares(timing: dict[str, Any] | list[int]) -> list[float]:
    """Per round, the CPU time the runner got during its measured loop over the loop's wall time
    (rounds whose runner did not report it are left out)."""
    if isinstance(timing, list):
        return []
    entries = timing.get("rounds") or [timing]
    return [e["cpu_ns"] / e["wall_ns"] for e in entries
            if isinstance(e.get("cpu_ns"), int) and isinstance(e.get("wall_ns"), int) and e["wall_ns"] > 0]


# Linux PSI "some" over the measured loop: the share of its wall time in which some task waited
# for a CPU. A quiet 2-core machine shows 0-3%; a co-tenant that keeps every core busy, near
# 100%, even when the runner itself was not descheduled (a short loop outruns the co-tenant:
# a new process is scheduled first) and its CPU share looks healthy.
BUSY_PRESSURE = 0.25


def cpu_pressures(timing: dict[str, Any] | list[int]) -> list[float]:
    """Per round, the CPU pressure (PSI "some") during the runner's measured loop over the loop's
    wall time (rounds whose device has no PSI are left out)."""
    if isinstance(timing, list):
        return []
    entries = timing.get("rounds") or [timing]
    return [e["cpu_pressure_ns"] / e["wall_ns"] for e in entries
            if isinstance(e.get("cpu_pressure_ns"), int) and isinstance(e.get("wall_ns"), int) and e["wall_ns"] > 0]
