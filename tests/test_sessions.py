"""Sessions: the device's session-to-session noise, learned from its history (edgeship/measure/sessions.py).

Synthetic sessions stand for a shared machine whose speed drifts over minutes: the verdict
that one session's rounds would give confidently (and wrongly, against the artifact's
long-run p90) must become MARGINAL once the history shows the drift; a quiet history must
still let far budgets decide; a session unlike the earlier ones of the same artifact says the
device changed state. The history itself is written by real ``profile`` runs of the demo.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgeship.errors import UsageError
from edgeship.gating.budgets import Check
from edgeship.gating.judge import decide_latency, flag_noisy_devices, session_interval
from edgeship.measure.sessions import (
    SessionNoise,
    device_noise,
    earlier_sessions,
    history_path,
    learn_noise,
    read_history,
    record_sessions,
    state_shift,
)
from edgeship.types import Verdict
from tests.conftest import make_config, project_copy


@pytest.fixture
def cfg(tmp_path: Path):
    return make_config(tmp_path)


def rounds_at(levels: list[float], n: int = 60, spread: float = 0.02, seed: int = 0) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    return [[int(v * 1e6) for v in lv * (1 + spread * rng.standard_normal(n))] for lv in levels]


def result(rounds: list[list[int]], digest: str = "d" * 64, created: str | None = None, name: str = "onnx-int8") -> dict[str, Any]:
    created = created or _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    return {"status": "ok", "created": created, "device": {"name": "local", "kind": "local"},
            "artifact": {"name": name, "artifact_digest": digest, "target": "onnx", "precision": "int8"}, "runtime": {"name": "onnxruntime", "version": "1.x"},
            "settings": {"threads": 1},
            "timing": {"samples_ns": [s for r in rounds for s in r], "rounds": [{"samples_ns": r} for r in rounds]}}


def ago(minutes: float) -> str:
    return (_dt.datetime.now(_dt.timezone.utc) - _dt.timedelta(minutes=minutes)).isoformat(timespec="seconds")


def history(cfg, levels: list[float], digest: str = "d" * 64, name: str = "onnx-int8") -> None:
    """One recorded session per level (ms), a minute apart, the newest last."""
    res = [result(rounds_at([lv] * 3, seed=i), digest, ago(len(levels) - i), name) for i, lv in enumerate(levels)]
    record_sessions(cfg, "local", res)


def check(limit: float) -> Check:
    return Check(0, "local", "onnx-int8", "latency_p90_ms", limit)


def p90(rounds: list[list[int]]) -> float:
    return float(np.percentile(np.concatenate(rounds) / 1e6, 90))


def test_record_replaces_a_session_of_the_same_result(cfg) -> None:
    """The gate re-measured rounds of a profiled session: its line is replaced, not doubled
    (the file goes through fsutil's atomic writer, whose umask handling tests/test_atomic.py
    checks)."""
    r = result(rounds_at([1.0, 1.0]), created="2026-11-28T00:00:00.000+00:00")
    assert record_sessions(cfg, "local", [r]) == 1
    r2 = result(rounds_at([1.0, 1.0, 1.2]), created="2026-11-28T00:00:00.000+00:00")
    record_sessions(cfg, "local", [r2, {**r, "status": "skipped"}])
    recs = read_history(cfg, "local")
    assert len(recs) == 1 and recs[0]["rounds"] == 3 and recs[0]["samples"] == 180
    assert recs[0]["stats"]["p90"] == pytest.approx(p90(rounds_at([1.0, 1.0, 1.2])), rel=1e-6)


def test_emulated_and_aggregate_only_results_leave_no_session(cfg) -> None:
    emulated = result(rounds_at([1.0]))
    emulated["timing"]["emulated"] = True
    aggregate = {**result(rounds_at([1.0])), "timing": {"aggregate": {"p90": 1e6}}}
    assert record_sessions(cfg, "local", [emulated, aggregate]) == 0
    assert not history_path(cfg, "local").exists()


def test_a_corrupt_history_line_is_one_message_naming_the_file(cfg) -> None:
    path = history_path(cfg, "local")
    path.parent.mkdir(parents=True)
    path.write_text('{"digest": "x", "stats": {}}\nnot json\n')
    with pytest.raises(UsageError, match=r"local\.jsonl line 2: not a session record \(not valid JSON .*\); delete the file"):
        read_history(cfg, "local")


def test_learned_noise_is_the_pooled_spread_within_each_artifact() -> None:
    rng = np.random.default_rng(1)
    recs = []
    for a, base in enumerate((2.0, 9.0, 30.0)):       # artifacts of very different speeds
        for v in base * np.exp(0.05 * rng.standard_normal(40)):
            recs.append({"digest": f"{a}" * 64, "runtime": "ort", "threads": 1, "stats": {"p90": float(v)}})
    noise = learn_noise(recs, "p90")
    assert noise is not None and noise.df == 117 and noise.groups == 3
    assert 0.04 < noise.sd < 0.06          # the 5% put in, not the 4x between artifacts
    assert learn_noise(recs[:2] + recs[40:41], "p90") is None     # 1 degree of freedom: unknown


def test_old_sessions_fall_out_of_the_window(cfg) -> None:
    history(cfg, [1.0, 1.3, 1.0, 1.3])
    assert device_noise(cfg, "local", "p90") is not None
    later = _dt.datetime.now(_dt.timezone.utc) + _dt.timedelta(hours=cfg.gate.session_window_hours + 1)
    assert device_noise(cfg, "local", "p90", now=later) is None


def test_stated_session_cv_is_a_floor(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, devices={"local": {"kind": "local", "session_cv": 0.08}})
    noise = device_noise(cfg, "local", "p90")
    assert noise is not None and noise.sd == 0.08 and math.isinf(noise.df) and noise.source == "configured"
    history(cfg, [1.0, 1.25, 1.0, 1.25, 1.0])       # a history noisier than stated wins (2 in 5: not set aside)
    learned = device_noise(cfg, "local", "p90")
    assert learned is not None and learned.sd > 0.08 and learned.source == "learned"


def test_drifting_sessions_turn_a_wrong_pass_into_marginal(cfg) -> None:
    """The machine's speed wandered +-15% over the earlier sessions; this session's five rounds
    agree closely on a fast spell. Alone, they PASS a budget 6% above this session, which sits
    below the artifact's long-run p90 (the sessions' mean): wrong. With the history, the
    interval widens to the sessions' spread and the verdict is MARGINAL."""
    levels = [1.0, 1.15, 0.92, 1.12, 0.95, 1.18, 1.05]
    history(cfg, levels)
    now = rounds_at([0.95] * 5, seed=99)
    limit = p90(now) * 1.06
    long_run = float(np.exp(np.mean(np.log([p90(rounds_at([lv] * 3, seed=i)) for i, lv in enumerate(levels)]))))
    assert limit < long_run
    alone, _ = decide_latency(check(limit), result(now)["timing"], cfg, None)
    assert alone.verdict is Verdict.PASS          # what one session's rounds say
    noise = device_noise(cfg, "local", "p90")
    assert noise is not None and noise.sd > 0.05
    res, _ = decide_latency(check(limit), result(now)["timing"], cfg, None, noise=noise)
    assert res.verdict is Verdict.MARGINAL and "within the run-to-run noise of 'local'" in res.detail
    assert res.low < p90(now) < limit < res.high and res.rounds["sessions"]["cv"] == pytest.approx(noise.sd)


def test_session_noise_stops_remeasuring_that_cannot_help(cfg) -> None:
    """More rounds of the same session cannot narrow the session part: MARGINAL at once."""
    calls = []

    def remeasure(device: str, artifact: str) -> list[int]:
        calls.append(artifact)
        return rounds_at([1.0])[0]

    noise = SessionNoise(0.10, 30.0, 31, 1, "learned")
    now = rounds_at([1.0] * 5)
    res, used = decide_latency(check(p90(now) * 1.05), result(now)["timing"], cfg, remeasure, noise=noise)
    assert res.verdict is Verdict.MARGINAL and not calls and len(used) == 5


def test_a_quiet_history_still_decides_far_budgets(cfg) -> None:
    history(cfg, [1.0, 1.01, 0.99, 1.0, 1.01, 0.995])
    noise = device_noise(cfg, "local", "p90")
    assert noise is not None and noise.sd < 0.02
    now = rounds_at([1.0] * 5, seed=7)
    res, _ = decide_latency(check(p90(now) * 1.10), result(now)["timing"], cfg, None, noise=noise)
    assert res.verdict is Verdict.PASS
    res, _ = decide_latency(check(p90(now) * 0.90), result(now)["timing"], cfg, None, noise=noise)
    assert res.verdict is Verdict.FAIL


def test_a_session_unlike_the_earlier_ones_says_the_device_changed(cfg) -> None:
    """Ten steady sessions near 1.0 ms, then this one at 1.3 ms: the artifact is the same, so the
    device is not in the state it was; a budget between the two states is not a confident
    FAIL, while one beyond both still decides."""
    history(cfg, [1.0, 1.01, 0.99, 1.0, 1.02, 0.98, 1.0, 1.01, 0.99, 1.0])
    noise = device_noise(cfg, "local", "p90")       # learned without this session
    now_rounds = rounds_at([1.3] * 5, seed=3)
    now = result(now_rounds)
    record_sessions(cfg, "local", [now])      # profile records the session before the gate reads it
    earlier = earlier_sessions(cfg, read_history(cfg, "local"), now, "p90")
    assert len(earlier) == 10                 # its own session left out
    assert noise is not None
    shift = state_shift(p90(now_rounds), earlier, noise, 0.99)
    assert shift is not None and 0.25 < shift < 0.35
    usual = float(np.median(earlier))
    res, _ = decide_latency(check(1.2 * usual), now["timing"], cfg, None, noise=noise, earlier=earlier)
    assert res.verdict is Verdict.MARGINAL and "not in the state it was in" in res.detail
    assert res.low < usual < 1.2 * usual < p90(now_rounds) < res.high
    res, _ = decide_latency(check(2.0 * usual), now["timing"], cfg, None, noise=noise, earlier=earlier)
    assert res.verdict is Verdict.PASS and "not in the state it was in" in res.detail
    assert state_shift(usual, earlier, noise, 0.99) is None    # a usual session: no shift


def test_a_bad_hour_is_set_aside_and_does_not_poison_the_week(cfg) -> None:
    """A spell of 3 sessions at 1.8x (a co-tenant streaming through the shared cache), and one the
    runner reported contended (half a CPU; seen on the 2-core machine at 2.4x), among 20
    quiet ones: another state of the device. The learned spread stays the quiet one, so
    afterwards a usual session decides a budget 25% away again instead of being MARGINAL for
    the whole window."""
    quiet = [1.0, 1.02, 0.98, 1.01, 0.99, 1.0, 1.03, 0.97, 1.0, 1.01]
    history(cfg, quiet + [1.8, 1.85, 1.78] + quiet)
    contended = result(rounds_at([2.5] * 3), created=ago(0.5))
    for e in contended["timing"]["rounds"]:
        e.update(cpu_ns=50, wall_ns=100)
    record_sessions(cfg, "local", [contended])
    assert read_history(cfg, "local")[-1]["cpu_share"] == 0.5
    noise = device_noise(cfg, "local", "p90")
    assert noise is not None and noise.sd < 0.04 and noise.set_aside == 4 and noise.sessions == 20
    assert "4 set aside as another state" in noise.describe("local")
    now = result(rounds_at([1.0] * 5, seed=11))
    earlier = earlier_sessions(cfg, read_history(cfg, "local"), now, "p90")
    assert len(earlier) == 20 and max(earlier) < 1.2
    res, _ = decide_latency(check(p90(rounds_at([1.0] * 5, seed=11)) * 1.25),
                            now["timing"], cfg, None, noise=noise, earlier=earlier)
    assert res.verdict is Verdict.PASS, res.detail


def test_session_interval_uses_t_with_the_noise_degrees_of_freedom() -> None:
    lo4, hi4 = session_interval(10.0, SessionNoise(0.05, 4.0, 5, 1, "learned"), 0.95)
    lo_inf, hi_inf = session_interval(10.0, SessionNoise(0.05, math.inf, 0, 0, "configured"), 0.95)
    assert hi4 == pytest.approx(10.0 * math.exp(2.776 * 0.05), rel=1e-3)
    assert hi_inf == pytest.approx(10.0 * math.exp(1.960 * 0.05), rel=1e-3)
    assert lo4 * hi4 == pytest.approx(100.0) and lo4 < lo_inf


def test_noisy_sessions_flag_every_latency_verdict_of_the_device(cfg) -> None:
    noise = SessionNoise(0.18, 20.0, 21, 1, "learned")
    now = rounds_at([1.0] * 5)
    res, _ = decide_latency(check(p90(now) * 3), result(now)["timing"], cfg, None, noise=noise)
    flagged = flag_noisy_devices([res], cfg)
    assert flagged[0].verdict is Verdict.PASS
    assert flagged[0].detail.startswith("too noisy: session-to-session CV up to 18% on 'local'")


def test_profile_writes_the_history_and_the_gate_uses_it(profiled: Path, tmp_path: Path) -> None:
    """Real profile runs of the demo's onnx-fp32: each leaves one session per artifact; with
    three earlier ones besides the session it judges, the gate's latency checks carry the
    learned noise."""
    from edgeship.gating.judge import gate
    from edgeship.measure.profile import profile
    from edgeship.types import Precision, Target

    cfg = project_copy(tmp_path, make_config(profiled))
    first = read_history(cfg, "local")
    results = {r["artifact"]["name"]: r for r in (json.loads(p.read_text()) for p in (profiled / "build" / "results" / "local").glob("*.json"))}
    assert {r["artifact"] for r in first} == {n for n, r in results.items() if r["status"] == "ok"}
    assert all(r["digest"] == results[r["artifact"]]["artifact"]["artifact_digest"] for r in first)
    for _ in range(3):
        profile(cfg, "local", targets=(Target.ONNX,), precisions=(Precision.FP32,))
    recs = [r for r in read_history(cfg, "local") if r["artifact"] == "onnx-fp32"]
    assert len(recs) == 4 and all(isinstance(r["cpu_share"], float) for r in recs)
    # On a busy machine the runner is descheduled and these sessions are set aside as contended
    # (they teach no noise: issue 27 saw `KeyError: 'sessions'`). What is tested here is that
    # the gate reads the history profile wrote, not how quiet the host is: the sessions are
    # declared quiet, as a runner with a CPU to itself reports them.
    path = history_path(cfg, "local")
    path.write_text("".join(json.dumps({**r, "cpu_share": 1.0}) + "\n" for r in read_history(cfg, "local")))
    report = gate(cfg, remeasure=lambda d, a: []).report
    lat = [c for c in report["checks"] if c["metric"] == "latency_p90_ms" and c["artifact"] == "onnx-fp32"]
    assert lat and all(c["rounds"]["sessions"]["source"] == "learned" and c["rounds"]["sessions"]["df"] >= 2 for c in lat)


def test_profile_warns_when_the_sessions_of_a_device_are_too_noisy(cfg) -> None:
    from edgeship.commands.profile import profile_table

    now = result(rounds_at([1.0] * 3))
    _, notes = profile_table([now], cfg)
    assert not [n for n in notes if "too noisy" in n]
    history(cfg, [1.0, 1.3, 0.8, 1.25, 0.85, 1.2])
    _, notes = profile_table([now], cfg)
    assert [n for n in notes if n.startswith("too noisy: sessions on 'local' vary")]


_WRITER = """
import sys
from pathlib import Path
from tests.conftest import make_config
from tests.test_sessions import result, rounds_at
from edgeship.measure.sessions import record_sessions
cfg = make_config(Path(sys.argv[1]))
for i in range(15):
    record_sessions(cfg, "local", [result(rounds_at([1.0]), created=f"2026-11-28T00:00:{i:02d}.{sys.argv[2]}+00:00")])
"""


def test_concurrent_profiles_lose_no_session(tmp_path: Path) -> None:
    """Four processes recording at once (two profiles of one project, a cluster's devices): the
    read-modify-write holds the history directory's lock, so all 60 lines are there."""
    import subprocess
    import sys

    from tests.conftest import ROOT

    procs = [subprocess.Popen([sys.executable, "-c", _WRITER, str(tmp_path), f"{k:03d}"], cwd=ROOT) for k in range(4)]
    assert all(p.wait(timeout=120) == 0 for p in procs)
    recs = read_history(make_config(tmp_path), "local")
    assert len(recs) == 60 and len({r["created"] for r in recs}) == 60


def test_history_dir_may_live_outside_build(tmp_path: Path) -> None:
    """[gate] history_dir: a CI cache path (relative to edgeship.toml, or absolute) holds the
    history, in the documented line format (docs/gate.md, "History that travels")."""
    cfg = make_config(tmp_path, gate={"history_dir": "ci-cache/edgeship-history"})
    assert cfg.history_dir == tmp_path / "ci-cache" / "edgeship-history"
    history(cfg, [1.0, 1.1, 1.0])
    path = tmp_path / "ci-cache" / "edgeship-history" / "local.jsonl"
    assert history_path(cfg, "local") == path and not (tmp_path / "build" / "history").exists()
    line = json.loads(path.read_text().splitlines()[0])
    assert set(line) >= {"v", "created", "artifact", "digest", "runtime", "threads", "rounds", "samples", "stats",
                         "cpu_share"} and line["v"] == 1 and set(line["stats"]) == {"p50", "p90", "p99", "mean"}   # provenance keys (docs/reports.md) come on top
    # a fresh checkout whose build/ is empty learns from the cache at once
    fresh = make_config(tmp_path / "checkout", gate={"history_dir": str(tmp_path / "ci-cache" / "edgeship-history")})
    noise = device_noise(fresh, "local", "p90")
    assert noise is not None and noise.sessions == 3 and noise.source == "learned"
    assert make_config(tmp_path).history_dir == tmp_path / "build" / "history"


def test_concurrent_jobs_share_a_history_dir_outside_build(tmp_path: Path) -> None:
    """Two projects (CI jobs on one runner) appending to one cache directory at once lose nothing."""
    import subprocess
    import sys

    from tests.conftest import ROOT

    shared = tmp_path / "cache"
    writer = _WRITER.replace("make_config(Path(sys.argv[1]))",
                             f"make_config(Path(sys.argv[1]), gate={{'history_dir': {str(shared)!r}}})")
    procs = [subprocess.Popen([sys.executable, "-c", writer, str(tmp_path / f"job{k}"), f"{k:03d}"], cwd=ROOT)
             for k in range(3)]
    assert all(p.wait(timeout=120) == 0 for p in procs)
    recs = read_history(make_config(tmp_path / "job0", gate={"history_dir": str(shared)}), "local")
    assert len(recs) == 45 and len({r["created"] for r in recs}) == 45


def test_a_history_dir_that_is_a_file_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "taken").write_text("not a folder\n")
    cfg = make_config(tmp_path, gate={"history_dir": "taken"})
    with pytest.raises(UsageError, match=r"taken: cannot write the device's history there .*fix \[gate\] history_dir"):
        history(cfg, [1.0])
