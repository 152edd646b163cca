"""``min_speedup_vs_fp32``: INT8 must pay on each device, judged from FP32 and INT8 rounds
interleaved in one profile session (edgeship/gating/speedup.py).

Synthetic rounds stand for a shared machine whose speed drifts between rounds: the pairs share
the drift, so a speed-up is decided where the rounds alone wander more than the gap. A real
profile of the demo (local) checks the session link and the report; tests/test_ssh.py and
tests/test_cluster.py gate the same budget on an ssh board and on a Ray lab.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgeship.errors import ConfigError
from edgeship.gating.budgets import SPEEDUP, Check, expand
from edgeship.gating.speedup import decide_speedup, judge_speedup, session_rounds
from edgeship.types import Verdict
from tests.conftest import make_config, project_copy


def rounds(levels: list[float], seed: int, n: int = 80) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    return [[int(v * 1e6) for v in lv * (1 + 0.01 * np.abs(rng.standard_normal(n)))] for lv in levels]


def result(name: str, precision: str, rs: list[list[int]], session: str = "s1", kind: str = "local",
           digest: str | None = None) -> dict[str, Any]:
    return {"status": "ok", "session": session, "device": {"name": "local", "kind": kind},
            "artifact": {"name": name, "target": "onnx", "precision": precision, "artifact_digest": digest or name * 4},
            "timing": {"samples_ns": [s for r in rs for s in r], "rounds": [{"samples_ns": r} for r in rs]},
            "runtime": {"name": "onnxruntime"}, "settings": {"threads": 1}}


def check(limit: float = 1.2) -> Check:
    return Check(0, "local", "onnx-int8", SPEEDUP, limit, target="onnx", precision="int8")


DRIFT = [1.0, 1.25, 0.85, 1.3, 0.9]        # the machine's speed, round by round: +-20%


def digests() -> dict[str, str]:
    return {"onnx-int8": "onnx-int8" * 4, "onnx-fp32": "onnx-fp32" * 4}


@pytest.fixture
def cfg(tmp_path: Path):
    return make_config(tmp_path)


def test_paired_rounds_decide_through_drift(cfg) -> None:
    """INT8 1.5x faster in every pair while the machine wanders +-20%: the rounds of each artifact
    overlap (FP32's fastest round is faster than INT8's slowest), the pairs do not."""
    fp = rounds([2.0 * d for d in DRIFT], 1)
    q = rounds([2.0 / 1.5 * d for d in DRIFT], 2)
    assert min(np.median(r) for r in fp) < max(np.median(r) for r in q)
    res, _ = judge_speedup(check(1.2), result("onnx-int8", "int8", q), result("onnx-fp32", "fp32", fp), digests(), cfg, None)
    assert res.verdict is Verdict.PASS and res.value == pytest.approx(1.5, rel=0.02) and res.low >= 1.2, res.detail
    assert "over 5 interleaved round pairs" in res.detail and "vs min 1.2x" in res.detail
    res, _ = judge_speedup(check(2.0), result("onnx-int8", "int8", q), result("onnx-fp32", "fp32", fp), digests(), cfg, None)
    assert res.verdict is Verdict.FAIL and res.high < 2.0 and "does not pay this much on 'local'" in res.detail


def test_a_straddling_speedup_measures_more_pairs_then_is_marginal(cfg) -> None:
    """1.2x measured, budget 1.2x: more pairs (FP32 and INT8 back to back, order alternating) up
    to gate.max_rounds, then MARGINAL on the point estimate."""
    calls: list[str] = []

    def remeasure(device: str, artifact: str) -> list[int]:
        calls.append(artifact)
        return rounds([2.0 if artifact == "onnx-fp32" else 2.0 / 1.2], len(calls))[0]

    fp, q = [2.0, 2.1, 1.9], [2.0 / 1.25, 2.1 / 1.15, 1.9 / 1.2]
    res = decide_speedup(check(1.2), fp, q, "onnx-fp32", cfg, remeasure)
    assert res.verdict is Verdict.MARGINAL and "after 5 extra round pair(s)" in res.detail
    assert calls[:4] == ["onnx-fp32", "onnx-int8", "onnx-int8", "onnx-fp32"] and len(calls) == 10
    assert decide_speedup(check(1.2), fp, q, "onnx-fp32", cfg, lambda d, a: []).verdict is Verdict.MARGINAL


def test_results_of_different_sessions_are_not_compared(cfg) -> None:
    fp, q = rounds([2.0] * 3, 1), rounds([1.0] * 3, 2)
    res, _ = judge_speedup(check(), result("onnx-int8", "int8", q, "s2"), result("onnx-fp32", "fp32", fp, "s1"),
                           digests(), cfg, None)
    assert res.verdict is Verdict.FAIL and "not profiled in the same session" in res.detail
    assert res.rerun == "edgeship profile --device local --target onnx --precision fp32,int8"
    res, _ = judge_speedup(check(), result("onnx-int8", "int8", q), None, digests(), cfg, None)
    assert res.verdict is Verdict.FAIL and res.detail.startswith("no profile result for onnx-fp32 on local")
    stale = result("onnx-fp32", "fp32", fp, digest="x" * 64)
    res, _ = judge_speedup(check(), result("onnx-int8", "int8", q), stale, digests(), cfg, None)
    assert res.verdict is Verdict.FAIL and "stale profile result for onnx-fp32" in res.detail


def test_emulated_boards_are_skipped(cfg) -> None:
    fp, q = rounds([2.0] * 3, 1), rounds([1.0] * 3, 2)
    res, _ = judge_speedup(check(), result("onnx-int8", "int8", q, kind="emulated"),
                           result("onnx-fp32", "fp32", fp, kind="emulated"), digests(), cfg, None)
    assert res.verdict is Verdict.SKIPPED and res.passed and "timing is not representative" in res.detail


def test_rounds_remeasured_for_a_latency_check_are_not_pairs() -> None:
    r = result("onnx-int8", "int8", rounds([1.0, 1.0], 1))
    r["timing"]["rounds"].append({"samples_ns": [5_000_000] * 10, "remeasured": True})
    assert len(session_rounds(r)) == 2
    adb = {"timing": {"rounds": [{"aggregate": {"p50": 2_000_000}}, {"aggregate": {"mean": 3_000_000}}]}}
    assert session_rounds(adb) == [2.0, 3.0]      # a native tool's printed median per round


def test_budget_expands_to_non_fp32_artifacts_per_device(tmp_path: Path) -> None:
    from edgeship.artifact.selection import BrokenArtifact

    arts = [BrokenArtifact(tmp_path / f"onnx-{p}", "onnx", p, "x") for p in ("fp32", "int8", "int8-dynamic")]
    budget = {"device": "*", "target": "onnx", "precision": "*", "min_speedup_vs_fp32": 1.2}
    cfg = make_config(tmp_path, budgets=[budget], devices={"local": {"kind": "local"}, "box": {"kind": "local"}})
    got = sorted((c.device, c.artifact) for c in expand(cfg, arts) if c.metric == SPEEDUP)
    assert got == [("box", "onnx-int8"), ("box", "onnx-int8-dynamic"), ("local", "onnx-int8"), ("local", "onnx-int8-dynamic")]
    only_fp32 = make_config(tmp_path, budgets=[{**budget, "precision": "fp32"}])
    with pytest.raises(ConfigError, match=r"\[\[budgets\]\] #1 .*min_speedup_vs_fp32 compares a precision with FP32"):
        expand(only_fp32, arts)


def test_the_gate_judges_a_real_profile_session(profiled: Path, tmp_path: Path) -> None:
    """The demo's onnx fp32 and int8 profiled on local in one call (5 rounds each, interleaved):
    the speed-up check is decided from its paired rounds and shows in report.json with its unit.
    The budget sits far below any speed-up a CPU gives, so the verdict does not depend on how
    busy this machine is (5 pairs: a t interval with 4 degrees of freedom)."""
    from edgeship.gating.judge import gate
    from edgeship.measure.profile import profile
    from edgeship.reports.fmt import metric_value
    from edgeship.types import Precision, Target
    from tests.conftest import FAST_PROFILE

    budget = {"device": "local", "target": "onnx", "precision": "int8", "min_speedup_vs_fp32": 0.05}
    cfg = project_copy(tmp_path, make_config(profiled), budgets=[budget], profile={**FAST_PROFILE, "rounds": 5})
    results = profile(cfg, "local", (Target.ONNX,), (Precision.FP32, Precision.INT8))
    assert len({r["session"] for r in results}) == 1 and len(results) == 2     # one profile call: one session
    saved = [json.loads(p.read_text()) for p in (cfg.build / "results" / "local").glob("onnx-*.json")]
    assert {r["session"] for r in saved} == {results[0]["session"]}
    report = gate(cfg, remeasure=lambda d, a: []).report
    (c,) = [c for c in report["checks"] if c["metric"] == SPEEDUP]
    assert c["verdict"] == "PASS" and c["low"] >= 0.05 and "the speed of onnx-fp32" in c["detail"], c
    assert "over 5 interleaved round pairs" in c["detail"] and metric_value(SPEEDUP, c["limit"]) == "0.05 x"
