"""Atomic, sweepable, readable files: artifacts are replaced by an atomic symlink swap, killed
runs are swept by the next one, racing writers both succeed, report sets are published whole,
and everything honours the umask."""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgeship.artifact.atomic import atomic_directory, publish_set, sweep, write_json_atomic
from edgeship.artifact.manifest import read_manifest
from edgeship.cli import main
from edgeship.errors import UsageError
from edgeship.reports import write_reports
from tests.conftest import ROOT, cli_project


def _leftovers(parent: Path) -> list[str]:
    """Hidden entries no link in ``parent`` points to: what a run leaked."""
    live = {os.readlink(p).split("/")[0] for p in parent.iterdir() if p.is_symlink()}
    return sorted(p.name for p in parent.iterdir() if p.name.startswith(".") and p.name not in live)


def _write_version(final: str, tag: str, barrier) -> None:  # type: ignore[no-untyped-def]
    with atomic_directory(Path(final)) as d:
        (d / "a.txt").write_text(tag)
        barrier.wait(timeout=60)   # both writers are inside their temp dirs at the same time
        (d / "b.txt").write_text(tag)


def test_two_racing_writers_both_succeed(tmp_path: Path) -> None:
    final = tmp_path / "onnx-int8"
    with atomic_directory(final) as d:
        (d / "a.txt").write_text("old")
        (d / "b.txt").write_text("old")
    ctx = multiprocessing.get_context("spawn")   # fork in a threaded pytest is unsafe
    barrier = ctx.Barrier(2)
    procs = [ctx.Process(target=_write_version, args=(str(final), tag, barrier)) for tag in ("one", "two")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0]
    a, b = (final / "a.txt").read_text(), (final / "b.txt").read_text()
    assert a == b and a in {"one", "two"}          # one complete version, never a mix
    assert _leftovers(tmp_path) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["onnx-int8", os.readlink(final)])


def _publish_many(out: str, name: str, other: str, rounds: int, barrier) -> None:  # type: ignore[no-untyped-def]
    barrier.wait(timeout=60)
    seen = False
    for i in range(rounds):
        publish_set(Path(out), {name: f"{name} {i}".encode()})
        there = (Path(out) / other).exists()
        if seen and not there:
            sys.exit(f"{other} vanished after {name} {i}")   # the other writer's name was dropped
        seen = seen or there


def test_two_publishers_of_different_names_keep_both(tmp_path: Path) -> None:
    """publish_set carries the other names over under the lock: two writers of different names
    (a gate and a report, say) racing many times never drop each other's file."""
    out = tmp_path / "reports"
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(2)
    procs = [ctx.Process(target=_publish_many, args=(str(out), name, other, 100, barrier))
             for name, other in (("a.json", "b.json"), ("b.json", "a.json"))]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0]
    assert (out / "a.json").read_text() == "a.json 99" and (out / "b.json").read_text() == "b.json 99"
    assert _leftovers(out) == []


def test_killed_writer_leftovers_are_swept_but_live_ones_are_not(tmp_path: Path) -> None:
    final = tmp_path / "art"
    with atomic_directory(final) as d:
        (d / "m").write_text("v1")
    # a dead run's version dir (nobody holds its lock) and temp file from before this run
    dead = tmp_path / f".art.v{'0' * 32}"
    dead.mkdir()
    stale = tmp_path / ".result.json.abcd1234.tmp"
    stale.write_text("half")
    os.utime(stale, (time.time() - 3600, time.time() - 3600))
    # a live writer: holds its version dir's lock
    assert set(sweep(tmp_path)) == {dead, stale}
    assert not dead.exists() and not stale.exists()
    with atomic_directory(tmp_path / "other") as live:
        assert sweep(tmp_path) == [] and live.is_dir()   # locked: never swept
    assert (final / "m").read_text() == "v1"


def test_plain_directory_from_a_copy_is_migrated(tmp_path: Path) -> None:
    final = tmp_path / "onnx-fp32"
    final.mkdir()
    (final / "m").write_text("old plain dir")
    with atomic_directory(final) as d:
        (d / "m").write_text("new")
    assert final.is_symlink() and (final / "m").read_text() == "new"
    assert _leftovers(tmp_path) == []
    copy = tmp_path / "copy"
    shutil.copytree(tmp_path, copy, ignore=shutil.ignore_patterns("copy"))
    assert (copy / "onnx-fp32").is_dir() and not (copy / "onnx-fp32").is_symlink()   # content, not a link
    assert (copy / "onnx-fp32" / "m").read_text() == "new"


def _export_argv(toml: Path) -> list[str]:
    return [sys.executable, "-m", "edgeship", "--config", str(toml), "export", "--target", "onnx", "--precision", "fp32"]


def test_killed_export_keeps_the_previous_artifact_and_is_swept(demo_project, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    shutil.copytree(demo_project[0].build / "artifacts", tmp_path / "build" / "artifacts")
    toml = cli_project(tmp_path)
    models = tmp_path / "build" / "artifacts" / "digits_cnn"
    art = models / "onnx-fp32"
    before = (art / "manifest.json").read_bytes()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(_export_argv(toml), cwd=tmp_path, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 300
        while not [p for p in models.iterdir() if p.name.startswith(".onnx-fp32.v")]:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            assert time.monotonic() < deadline, "the export never created its version directory"
            read_manifest(art)   # the previous artifact stays valid throughout
            time.sleep(0.02)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
    assert read_manifest(art) and (art / "manifest.json").read_bytes() == before
    assert [p for p in models.iterdir() if p.name.startswith(".onnx-fp32.v")]   # the killed run's leftover
    code = main(["--config", str(toml), "export", "--target", "onnx", "--precision", "fp32"])
    capsys.readouterr()
    assert code == 0
    m = read_manifest(art)
    assert m.model == "digits_cnn" and art.is_symlink()
    assert _leftovers(models) == []


def test_two_concurrent_exports_of_one_artifact_both_succeed(demo_project, tmp_path: Path) -> None:
    shutil.copytree(demo_project[0].build / "artifacts", tmp_path / "build" / "artifacts")
    toml = cli_project(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen(_export_argv(toml), cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    models = tmp_path / "build" / "artifacts" / "digits_cnn"
    assert read_manifest(models / "onnx-fp32").target == "onnx"
    assert _leftovers(models) == []


# -- interrupted profile ----------------------------------------------------------------------

# every round lasts >= 6 s (12 s of warm-up split over 2 rounds, no run cap): after the first
# artifact's last round, the next one's still runs for seconds, however loaded the machine is
SLOW_PROFILE = {"min_runs = 100\nmin_seconds = 1.0": "min_runs = 10\nmin_seconds = 0.0\nwarmup_runs = 1\n"
                "warmup_seconds = 12\nmax_runs = 0\nmax_seconds = 120\ntimeout_s = 300\nrounds = 2"}
THREE = ("-t", "onnx", "-p", "fp32,fp16,int8")


def _hashes(d: Path) -> dict[str, str]:
    import hashlib

    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.glob("*.json"))}


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["sigint", "sigkill"])
def test_interrupted_profile_keeps_every_earlier_result(demo_project, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str], sig: int) -> None:
    """Killed after its first artifact completed: that one result is replaced by the new complete
    one, every other artifact's earlier result is byte for byte as it was, nothing half-written."""
    from tests.conftest import project_copy, sigint_as_from_a_terminal

    project_copy(tmp_path, demo_project[0])
    fast = cli_project(tmp_path)
    assert main(["--config", str(fast), "profile", "--device", "local", *THREE]) == 0
    capsys.readouterr()
    results = tmp_path / "build" / "results" / "local"
    before = _hashes(results)
    assert len(before) == 3, before
    slow = cli_project(tmp_path, replace=SLOW_PROFILE, fast=False)
    argv = [sys.executable, "-m", "edgeship", "--config", str(slow), "profile", "--device", "local", *THREE]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(sigint_as_from_a_terminal(argv) if sig == signal.SIGINT else argv, cwd=tmp_path,
                            env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 600
        while _hashes(results) == before:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            assert time.monotonic() < deadline, "no result was completed"
            time.sleep(0.05)
        if sig == signal.SIGINT:
            proc.send_signal(signal.SIGINT)   # Ctrl-C: to edgeship, which stops its runner
            err = proc.communicate(timeout=120)[1].decode()
            assert proc.returncode == 130 and "interrupted" in err, (proc.returncode, err[-2000:])
        else:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(60)
    after = _hashes(results)
    changed = sorted(n for n in before if after.get(n) != before[n])
    assert set(after) == set(before), (sorted(before), sorted(after))   # nothing deleted
    assert 1 <= len(changed) < len(before), changed       # the kill came before the last artifact finished
    for name in changed:    # a complete result of both rounds, never a partial one
        r = json.loads((results / name).read_text())
        assert r["settings"]["rounds"] == 2 and len(r["timing"]["rounds"]) == 2, name
    assert not [p.name for p in results.iterdir() if p.name.startswith(".")], "temp files left behind"


# -- umask ------------------------------------------------------------------------------------

_UMASK_SCRIPT = """
import os, sys
os.umask(int(sys.argv[2], 8))
from pathlib import Path
from edgeship.artifact.atomic import atomic_directory, publish_set, write_json_atomic
root = Path(sys.argv[1])
write_json_atomic(root / "results" / "r.json", {"a": 1})
with atomic_directory(root / "art") as d:
    (d / "model.bin").write_bytes(b"x")
publish_set(root / "reports", {"report.json": b"{}", "junit.xml": b"<x/>"})
"""


@pytest.mark.parametrize(("mask", "fmode", "dmode"), [("022", 0o644, 0o755), ("077", 0o600, 0o700)])
def test_files_honour_the_umask(tmp_path: Path, mask: str, fmode: int, dmode: int) -> None:
    subprocess.run([sys.executable, "-c", _UMASK_SCRIPT, str(tmp_path), mask], check=True, cwd=ROOT, timeout=120)

    def mode(p: Path) -> int:
        return stat.S_IMODE(p.stat().st_mode)   # follows the links to the versions

    assert mode(tmp_path / "results" / "r.json") == fmode
    assert mode(tmp_path / "art") == dmode and mode(tmp_path / "art" / "model.bin") == fmode
    assert mode(tmp_path / "reports" / "report.json") == fmode and mode(tmp_path / "reports" / ".report-set") == dmode


# -- report sets ------------------------------------------------------------------------------

def _report(verdict: str) -> dict:
    # the fields report --from checks (edgeship/gating/report_schema.py), nothing more
    return {"schema": "edgeship.report/1", "edgeship": "0.1.0", "model": "m", "verdict": verdict, "counts": {},
            "exit_code": 0, "checks": [], "results": [], "devices": {}, "created": "2026-01-01T00:00:00+00:00",
            "config_digest": "x"}


def _set(out: Path) -> dict[str, bytes]:
    return {n: (out / n).read_bytes() for n in ("report.json", "report.md", "junit.xml", "report.html")}


def _render(name: str):  # type: ignore[no-untyped-def]
    return lambda report: f"{name}: {report['verdict']}\n"


@pytest.fixture
def published(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A published set; the renderers are stand-ins: these tests are about publishing."""
    from edgeship import reports

    monkeypatch.setattr(reports, "renderers", lambda html=True: {
        "report.md": _render("md"), "junit.xml": _render("junit"), "report.html": _render("html")})
    out = tmp_path / "reports"
    write_reports(_report("PASS"), out)
    return out


def test_report_set_is_published_whole(published: Path) -> None:
    first = _set(published)
    assert json.loads(first["report.json"])["verdict"] == "PASS"
    write_reports(_report("FAIL"), published)
    second = _set(published)
    assert json.loads(second["report.json"])["verdict"] == "FAIL"
    assert all(first[n] != second[n] for n in ("report.json", "report.md", "junit.xml"))
    assert _leftovers(published) == []


def test_junit_path_that_is_a_directory_keeps_the_previous_set(published: Path) -> None:
    first = _set(published)
    (published / "junit.xml").unlink()
    (published / "junit.xml").mkdir()
    with pytest.raises(UsageError, match=r"junit\.xml: cannot write the reports \(is a directory\)"):
        write_reports(_report("FAIL"), published)
    assert {n: v for n, v in _set_without_junit(published).items()} == {
        n: first[n] for n in ("report.json", "report.md", "report.html")}
    assert _leftovers(published) == []


def _set_without_junit(out: Path) -> dict[str, bytes]:
    return {n: (out / n).read_bytes() for n in ("report.json", "report.md", "report.html")}


def test_a_failing_renderer_changes_nothing(published: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from edgeship import reports

    first = _set(published)

    def boom(report: dict) -> str:
        raise RuntimeError("renderer bug")

    monkeypatch.setattr(reports, "renderers", lambda html=True: {"report.md": _render("md"), "junit.xml": boom})
    with pytest.raises(RuntimeError):
        write_reports(_report("FAIL"), published)
    assert _set(published) == first


def test_a_failing_write_changes_nothing(published: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = _set(published)
    real = Path.write_bytes

    def flaky(self: Path, data: bytes) -> int:
        if self.name == "junit.xml":
            raise OSError(28, "No space left on device", str(self))
        return real(self, data)

    monkeypatch.setattr(Path, "write_bytes", flaky)
    with pytest.raises(UsageError, match="No space left on device"):
        write_reports(_report("FAIL"), published)
    assert _set(published) == first
    assert _leftovers(published) == []


def test_report_without_json_keeps_report_json(published: Path) -> None:
    first = _set(published)
    write_reports(_report("FAIL"), published, json_too=False)
    now = _set(published)
    assert now["report.json"] == first["report.json"] and now["report.md"] != first["report.md"]


@pytest.mark.parametrize("out", ["file", "under_file", "proc"])
def test_report_out_that_cannot_be_written_is_one_line(published: Path, tmp_path: Path, out: str,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "afile").write_text("keep me")
    target = {"file": tmp_path / "afile", "under_file": tmp_path / "afile" / "sub",
              "proc": Path("/proc/edgeship-reports")}[out]
    first = _set(published)
    code = main(["report", "--from", str(published / "report.json"), "--out", str(target)])
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert "cannot write the reports" in lines[0] or "is a file, not a directory" in lines[0]
    assert (tmp_path / "afile").read_text() == "keep me" and _set(published) == first


def test_publish_set_refuses_before_touching_anything(tmp_path: Path) -> None:
    publish_set(tmp_path, {"a": b"1", "b": b"1"})
    (tmp_path / "b").unlink()
    (tmp_path / "b").mkdir()
    with pytest.raises(IsADirectoryError):
        publish_set(tmp_path, {"a": b"2", "b": b"2"})
    assert (tmp_path / "a").read_bytes() == b"1"


def test_write_json_atomic_sweeps_stale_temp_files(tmp_path: Path) -> None:
    stale = tmp_path / ".r.json.zzzz9999.tmp"
    stale.write_text("{")
    os.utime(stale, (time.time() - 60, time.time() - 60))
    os.utime(stale, (0, 0))
    write_json_atomic(tmp_path / "r.json", {"ok": True})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]


def test_dangling_artifact_link_is_one_line(demo_project, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shutil.copytree(demo_project[0].build / "artifacts", tmp_path / "build" / "artifacts")
    models = tmp_path / "build" / "artifacts" / "digits_cnn"
    shutil.rmtree(models / "onnx-fp32")
    (models / "onnx-fp32").symlink_to(f".onnx-fp32.v{'f' * 32}")
    code = main(["--config", str(cli_project(tmp_path)), "profile", "--device", "local"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "onnx-fp32: its version directory" in err, err
