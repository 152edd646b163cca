"""``edgeship history``: sessions over commits, and where they changed (edgeship/gating/trends.py,
edgeship/reports/history.py).

Synthetic histories with a known step at a known commit stand for a project whose middle
commit made the model slower: the change must be named at that commit, by the gate's own
state-shift test, in the terminal, the JSON and the page; a history of the same level under
noise must show none. The provenance of a line (its git commit) comes from a real git
repository; the page is opened in headless Chromium with the network disabled.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgeship.cli import main
from edgeship.gating.trends import trends
from edgeship.measure.sessions import history_path, read_history, record_evals, record_sessions
from tests.conftest import cli_project, make_config, require_tool

C1, C2, C3 = "1" * 40, "2" * 40, "3" * 40
T0 = _dt.datetime.now(_dt.timezone.utc) - _dt.timedelta(hours=6)


def line(i: int, commit: str | None, p90: float, artifact: str = "onnx-fp32", verdict: str | None = None,
         digest: str | None = None, share: float = 0.99) -> dict[str, Any]:
    """Session ``i`` (minutes after T0) of ``artifact`` at ``commit``, rebuilt per commit."""
    out: dict[str, Any] = {
        "kind": "profile", "created": (T0 + _dt.timedelta(minutes=i)).isoformat(timespec="milliseconds"),
        "artifact": artifact, "digest": digest or hashlib.sha256(f"{commit}/{artifact}".encode()).hexdigest(), "runtime": "onnxruntime 1.x", "threads": 1,
        "rounds": 3, "samples": 300, "stats": {"p50": 0.9 * p90, "p90": p90, "p99": 1.3 * p90, "mean": 0.95 * p90},
        "cpu_share": share, "commit": commit, "dirty": False, "memory_kb": 20480, "size_bytes": 100_000,
    }
    if verdict:
        out["verdicts"] = {"latency_p90_ms": {"verdict": verdict, "limit": 1.2, "value": p90, "low": None, "high": None}}
    return out


def write(cfg: Any, lines: list[dict[str, Any]], device: str = "local") -> None:
    path = history_path(cfg, device)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))


def levels(spec: list[tuple[str, float, int]], noise: float = 0.02, seed: int = 0, artifact: str = "onnx-fp32",
           start: int = 0) -> list[dict[str, Any]]:
    """Sessions at (commit, p90 level, count), in order, with ``noise`` lognormal session noise."""
    rng = np.random.default_rng(seed)
    out, i = [], start
    for commit, level, n in spec:
        for _ in range(n):
            p90 = level * float(np.exp(noise * rng.standard_normal()))
            out.append(line(i, commit, p90, artifact, "PASS" if p90 <= 1.2 else "FAIL"))
            i += 1
    return out


@pytest.fixture
def cfg(tmp_path: Path) -> Any:
    from edgeship.config import load_config

    return load_config(cli_project(tmp_path))


def cli(cfg: Any, *argv: str) -> int:
    import signal

    before = signal.getsignal(signal.SIGINT)   # the CLI installs its Ctrl-C handler; later tests must not inherit it
    try:
        return main(["-c", str(cfg.path), "-o", str(cfg.build), "history", *argv])
    finally:
        signal.signal(signal.SIGINT, before)


def test_a_step_is_named_at_the_first_commit_after_it(cfg: Any) -> None:
    write(cfg, levels([(C1, 1.0, 4), (C2, 1.5, 4), (C3, 1.5, 3)]))
    (s,) = trends(cfg).series
    assert len(s.points) == 11
    (p,) = s.changes
    assert p is s.points[4] and p["commit"] == C2          # the first session of the slower commit
    c = p["change"]
    # the next session is outside the interval of those before too: a step
    assert c["commit"] == C2 and c["before_commit"] == C1 and c["artifact_changed"] and c["kind"] == "step"
    assert c["shift"] == pytest.approx(0.5, abs=0.1) and c["earlier_sessions"] == 4
    # the rebuilt but equally fast artifact of C3 is no change
    assert all(q["change"] is None for q in s.points[5:])


def test_terminal_names_the_commit_within_100_columns(cfg: Any, capsys: pytest.CaptureFixture[str]) -> None:
    write(cfg, levels([(C1, 1.0, 4), (C2, 1.5, 4), (C3, 1.5, 3)]))
    assert cli(cfg, "--no-html") == 0
    out = capsys.readouterr().out
    assert max(len(x) for x in out.splitlines()) <= 100, out                  # piped: the plain width
    row = next(x for x in out.splitlines() if x.startswith("local"))
    assert re.search(r"\+[45]\d% at 22222222", row), row
    changes = out.split("changes:", 1)[1]
    assert "first seen at commit 22222222, after 11111111" in " ".join(changes.split())


def test_a_steady_history_has_no_change(cfg: Any, capsys: pytest.CaptureFixture[str]) -> None:
    # three rebuilds at the same speed, noisier than the step test's
    write(cfg, levels([(C1, 1.0, 5), (C2, 1.0, 5), (C3, 1.0, 5)], noise=0.05, seed=3))
    assert [p for s in trends(cfg).series for p in s.changes] == []
    assert cli(cfg, "--no-html") == 0
    out = capsys.readouterr().out
    assert "changes: none" in out and "onnx-fp32" in out


def test_a_change_at_the_latest_session_is_unconfirmed(cfg: Any) -> None:
    write(cfg, levels([(C1, 1.0, 5), (C2, 1.5, 1)]))
    (s,) = trends(cfg).series
    (p,) = s.changes
    assert p is s.points[-1] and p["change"]["kind"] == "unconfirmed" and s.steps == [p]


def test_a_long_steady_history_has_excursions_but_no_step(cfg: Any) -> None:
    """At the gate's 99%, 1 session in 100 of a steady device is outside the interval: over 400
    sessions a few are, each back at the next session; none is a step."""
    write(cfg, levels([(C1, 1.0, 200), (C2, 1.0, 200)], seed=7))
    (s,) = trends(cfg).series
    assert s.steps == [] and all(p["change"]["kind"] == "one session" for p in s.changes)


def test_no_noise_known_no_change_called(cfg: Any) -> None:
    # one session per commit: no artifact measured twice, so no noise and no test
    write(cfg, levels([(C1, 1.0, 1), (C2, 3.0, 1), (C3, 3.0, 1)]))
    tr = trends(cfg)
    assert [p for s in tr.series for p in s.changes] == [] and "no session-to-session noise" in tr.noise["local"]


def test_a_stated_session_cv_lets_a_contended_device_be_read(tmp_path: Path) -> None:
    """Every session contended (a shared machine): the gate learns no noise from them, so the
    device states it; the step is still found."""
    cfg = make_config(tmp_path, devices={"local": {"kind": "local", "session_cv": 0.2}})
    lines = [{**x, "cpu_share": 0.3} for x in levels([(C1, 1.0, 4), (C2, 2.6, 3), (C3, 2.6, 3)], noise=0.05)]
    write(cfg, lines)
    (s,) = trends(cfg).series
    (p,) = s.changes
    assert p["commit"] == C2 and p["contended"] and p["change"]["contended"]


def test_one_odd_session_is_an_excursion_not_a_step(cfg: Any) -> None:
    lines = levels([(C1, 1.0, 5)])
    lines += [line(5, C1, 1.6)]                         # same artifact, one slow session
    lines += levels([(C1, 1.0, 3)], seed=5, start=6)
    write(cfg, lines)
    (s,) = trends(cfg).series
    (p,) = s.changes
    assert p is s.points[5] and p["change"]["kind"] == "one session" and not p["change"]["artifact_changed"]


def test_json_has_one_entry_per_session_with_stable_keys(cfg: Any, capsys: pytest.CaptureFixture[str]) -> None:
    write(cfg, levels([(C1, 1.0, 4), (C2, 1.5, 3)]) + levels([(C1, 2.0, 7)], artifact="tflite-int8", seed=4))
    write(cfg, levels([(C1, 5.0, 3)], seed=2), device="pi5")
    assert cli(cfg, "--json", "--no-html") == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["schema"] == "edgeship.history/1" and len(doc["sessions"]) == 7 + 7 + 3
    for e in doc["sessions"]:
        assert {"device", "artifact", "commit", "p90_ms", "verdict", "change"} <= set(e)
    changed = [e for e in doc["sessions"] if e["change"]]
    assert [(e["device"], e["artifact"], e["commit"]) for e in changed] == [("local", "onnx-fp32", C2)]
    assert {e["verdict"] for e in doc["sessions"] if e["artifact"] == "onnx-fp32"} == {"PASS", "FAIL"}
    # filters: device, artifact (comma-separated), since
    assert cli(cfg, "--json", "--no-html", "--device", "pi5") == 0
    assert {e["device"] for e in json.loads(capsys.readouterr().out)["sessions"]} == {"pi5"}
    assert cli(cfg, "--json", "--no-html", "--artifact", "tflite-int8,onnx-fp32", "-d", "local") == 0
    assert {e["artifact"] for e in json.loads(capsys.readouterr().out)["sessions"]} == {"tflite-int8", "onnx-fp32"}
    since = (T0 + _dt.timedelta(minutes=4, seconds=-1)).isoformat()
    assert cli(cfg, "--json", "--no-html", "--since", since, "-a", "onnx-fp32", "-d", "local") == 0
    got = json.loads(capsys.readouterr().out)["sessions"]
    # the earlier sessions are hidden, yet the change against them is still found
    assert len(got) == 3 and got[0]["commit"] == C2 and got[0]["change"] is not None


@pytest.mark.parametrize("argv, message", [
    (["--device", "nope"], r"--device 'nope': no history for it .*devices with a history: local"),
    (["--artifact", "onnx-fp16"], r"--artifact 'onnx-fp16': no session of it in the history \(artifacts: onnx-fp32\)"),
    (["--since", "yesterday"], r"--since 'yesterday': not a date"),
])
def test_bad_filters_are_one_line_and_exit_2(cfg: Any, capsys: pytest.CaptureFixture[str], argv: list[str],
                                              message: str) -> None:
    write(cfg, levels([(C1, 1.0, 3)]))
    assert cli(cfg, *argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and re.search(message, err), err


def test_no_history_is_one_line(cfg: Any, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(cfg) == 2
    assert "no history under" in capsys.readouterr().err


def git(cwd: Path, *argv: str) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *argv], cwd=cwd, check=True, capture_output=True)


def test_lines_record_the_commit_and_eval_leaves_lines(tmp_path: Path) -> None:
    from tests.test_sessions import result, rounds_at

    require_tool("git", "apt-get install git")
    cfg = make_config(tmp_path)
    cfg.path.write_text("# the project\n")
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", "edgeship.toml")
    git(tmp_path, "commit", "-qm", "one")
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=tmp_path, capture_output=True, text=True,
                          check=True).stdout.strip()
    r = result(rounds_at([1.0, 1.0]), created="2026-11-28T00:00:00.000+00:00")
    r["env"] = {"cpu": {"cpu_class": "x86-avx2"}}
    r["artifact"]["size_bytes"] = 1234
    assert record_sessions(cfg, "local", [r]) == 1
    cfg.path.write_text("# changed\n")                 # a tracked file differs: dirty
    entry = {"device": "local", "artifact": "onnx-int8", "artifact_digest": "e" * 64, "status": "ok",
             "created": "2026-11-28T00:01:00+00:00", "cosine_mean": 0.999, "accuracy_drop": 0.002, "size_bytes": 1234,
             "cpu": {"cpu_class": "x86-avx2"}, "config_digest": "c" * 64}
    assert record_evals(cfg, [entry, {**entry, "status": "skipped"}]) == 1
    assert [r["kind"] for r in read_history(cfg, "local")] == ["profile"]    # what the gate learns from
    prof, ev = read_history(cfg, "local", kinds=None)
    assert prof["commit"] == head and prof["dirty"] is False and prof["device_class"] == "x86-avx2"
    assert prof["size_bytes"] == 1234 and prof["edgeship"] and prof["kind"] == "profile"
    assert ev["kind"] == "eval" and ev["commit"] == head and ev["dirty"] is True
    assert ev["fidelity"]["cosine_mean"] == 0.999
    # a gate that re-measured rewrites the session: it keeps the commit it was recorded at
    git(tmp_path, "commit", "-qam", "two")
    record_sessions(cfg, "local", [r])
    assert read_history(cfg, "local")[-1]["commit"] == head
    # eval lines never teach the device's noise, and the history still reads
    (s,) = [x for x in trends(cfg).series if x.artifact == "onnx-int8"]
    assert [p["kind"] for p in s.points] == ["profile", "eval"] and s.points[1]["cosine"] == 0.999


def test_no_git_or_no_repository_records_null(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from edgeship.measure.provenance import project_source

    cfg = make_config(tmp_path)
    assert project_source(cfg) == {"commit": None, "dirty": None}      # /tmp is no repository
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))                # and no git at all
    assert project_source(cfg) == {"commit": None, "dirty": None}


def test_the_gate_marks_the_sessions_it_judged(cfg: Any) -> None:
    from edgeship.gating.budgets import Check
    from edgeship.gating.checks import CheckResult
    from edgeship.gating.judge import mark_history
    from edgeship.types import Verdict
    from tests.test_sessions import result, rounds_at

    r = result(rounds_at([1.0, 1.0]), digest="d" * 64, created="2026-11-28T00:00:00.000+00:00")
    record_sessions(cfg, "local", [r])
    out = [CheckResult(Check(0, "local", "onnx-int8", "latency_p90_ms", 0.9), Verdict.FAIL, False, 1.0, 0.95, 1.05),
           CheckResult(Check(0, "*", "onnx-int8", "size_kb", 100.0), Verdict.PASS, True, 1.2),
           # stale evidence names no session
           CheckResult(Check(0, "local", "onnx-int8", "peak_memory_mb", 50.0), Verdict.FAIL, False, rerun="edgeship profile")]
    mark_history(cfg, out, {("local", "onnx-int8"): r}, {}, {"onnx-int8": "d" * 64})
    (line_,) = read_history(cfg, "local", kinds=None)
    assert line_["verdicts"]["latency_p90_ms"] == {"verdict": "FAIL", "limit": 0.9, "value": 1.0, "low": 0.95, "high": 1.05}
    assert line_["verdicts"]["size_kb"]["verdict"] == "PASS" and "peak_memory_mb" not in line_["verdicts"]
    (s,) = trends(cfg).series
    assert s.points[0]["verdict"] == "FAIL" and s.points[0]["p90_low_ms"] == 0.95


def test_page_draws_every_session_and_names_the_change_offline(cfg: Any, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from tests.test_html_report import open_in_chromium

    write(cfg, levels([(C1, 1.0, 4), (C2, 1.5, 4), (C3, 1.5, 3)]))
    assert cli(cfg, "--no-html") == 0 and not (cfg.build / "reports" / "history.html").exists()
    assert cli(cfg) == 0
    page = cfg.build / "reports" / "history.html"
    text = page.read_text()
    assert text.startswith("<!doctype html>") and text.count("<svg") == 2       # one series x (wide, narrow)
    assert "at commit <code>22222222</code>" in text and "<script" not in text
    assert len(re.findall(r"<tr><td class=name>local</td>", text)) == 11         # every session in the table
    chromium = shutil.which("chromium")
    if chromium is None:
        require_tool("chromium", "apt-get install chromium")
    requests, dom = open_in_chromium(page, tmp_path / "a", "--dump-dom")
    assert requests == [] and dom.count("<svg") == 2 and "22222222" in dom
    shot = tmp_path / "phone.png"
    requests, _ = open_in_chromium(page, tmp_path / "b", "--window-size=420,2400", f"--screenshot={shot}")
    assert requests == [] and shot.stat().st_size > 20_000
