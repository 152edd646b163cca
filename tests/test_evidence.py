"""The evidence chain on the real demo build: a gate passes only on evidence measured on the
artifacts as they are on disk, and every missing/stale piece is a FAIL row naming the command
to re-run; usage errors (unknown device, zero checks, bad --threshold) are one line, exit 2."""

from __future__ import annotations

import hashlib
import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from edgeship.cli import main
from edgeship.gating.evidence import eval_entries
from tests.conftest import ROOT, cli_project

ART = Path("build") / "artifacts" / "digits_cnn"


@pytest.fixture
def project(profiled: Path, tmp_path: Path) -> Path:
    shutil.copytree(profiled / "build", tmp_path / "build")
    return tmp_path


def gate(capsys: pytest.CaptureFixture[str], cfg: Path, *extra: str) -> tuple[int, str, str]:
    code = main(["--config", str(cfg), "gate", "--no-remeasure", *extra])
    out, err = capsys.readouterr()
    return code, out, err


def report(project: Path) -> dict[str, Any]:
    return json.loads((project / "build" / "reports" / "report.json").read_text())


def failed(project: Path) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in report(project)["checks"] if not c["passed"]}


def touch_manifest(art_dir: Path) -> None:
    """A rebuilt artifact: same files, new manifest bytes (as a re-export writes)."""
    path = art_dir / "manifest.json"
    m = json.loads(path.read_text())
    m["created"] = "2031-01-01T00:00:00+00:00"
    path.write_text(json.dumps(m, indent=1))


def eval_file(project: Path) -> Path:
    return project / "build" / "reports" / "eval.json"


def test_results_record_the_artifact_and_config_digests(project: Path) -> None:
    r = json.loads((project / "build" / "results" / "local" / "tflite-int8.json").read_text())
    manifest = (project / ART / "tflite-int8" / "manifest.json").read_bytes()
    assert r["artifact"]["artifact_digest"] == hashlib.sha256(manifest).hexdigest()
    assert r["artifact"]["manifest_sha256"] == r["artifact"]["artifact_digest"]
    assert len(r["config_digest"]) == 64 and int(r["config_digest"], 16) >= 0


def test_modified_artifact_without_reprofiling_fails_naming_the_commands(
        project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = cli_project(project)
    touch_manifest(project / ART / "tflite-int8")
    code, out, err = gate(capsys, cfg)
    assert code == 1 and "gate: FAIL" in out, out + err
    bad = failed(project)
    profile_cmd = "edgeship profile --device local --target tflite --precision int8"
    eval_cmd = "edgeship eval --target tflite --precision int8"
    assert sorted(bad) == ["local.tflite-int8.accuracy_drop", "local.tflite-int8.cosine_mean",
                           "local.tflite-int8.latency_p90_ms", "local.tflite-int8.peak_memory_mb"]
    for name in ("local.tflite-int8.latency_p90_ms", "local.tflite-int8.peak_memory_mb"):
        assert bad[name]["verdict"] == "FAIL" and bad[name]["rerun"] == profile_cmd
        assert "stale profile result for tflite-int8 on local: from another build (digest " in bad[name]["detail"]
        assert f"run `{profile_cmd}`" in bad[name]["detail"]
    assert bad["local.tflite-int8.cosine_mean"]["rerun"] == eval_cmd
    assert "stale eval entry local/tflite-int8" in bad["local.tflite-int8.cosine_mean"]["detail"]
    # the stale result is not reported as a measurement
    assert "tflite-int8" not in {r["artifact"]["name"] for r in report(project)["results"]}
    # every output shows the rows and the commands
    assert f"  {profile_cmd}" in out and f"  {eval_cmd}" in out
    md = (project / "build" / "reports" / "report.md").read_text()
    assert f"`{profile_cmd}`" in md and "stale profile result for tflite-int8" in md
    root = ET.parse(project / "build" / "reports" / "junit.xml").getroot()
    msgs = {(c.get("classname"), c.get("name")): c.find("failure").get("message")
            for c in root.iter("testcase") if c.find("failure") is not None}
    assert profile_cmd in msgs[("local.tflite-int8", "latency_p90_ms")]
    assert eval_cmd in msgs[("local.tflite-int8", "cosine_mean")]
    html = (project / "build" / "reports" / "report.html").read_text()
    assert "stale profile result for tflite-int8" in html

    # running the named profile command refreshes exactly the profile evidence
    assert main(["--config", str(cfg), *profile_cmd.split()[1:]]) == 0
    capsys.readouterr()
    code, _, _ = gate(capsys, cfg)
    assert code == 1 and sorted(failed(project)) == ["local.tflite-int8.accuracy_drop", "local.tflite-int8.cosine_mean"]


def test_eval_entry_with_another_digest_fails_naming_eval(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ev = json.loads(eval_file(project).read_text())
    ev["entries"]["local/onnx-int8"]["artifact_digest"] = "0" * 64
    eval_file(project).write_text(json.dumps(ev))
    code, out, err = gate(capsys, cli_project(project))
    assert code == 1, out + err
    bad = failed(project)
    assert sorted(bad) == ["local.onnx-int8.accuracy_drop", "local.onnx-int8.cosine_mean"]
    c = bad["local.onnx-int8.cosine_mean"]
    assert c["detail"].startswith("stale eval entry local/onnx-int8: from another build (digest 000000000000, artifact on disk ")
    assert c["detail"].endswith("run `edgeship eval --target onnx --precision int8`")


def test_v1_eval_without_digests_is_stale_everywhere(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ev = json.loads(eval_file(project).read_text())
    v1 = {"schema": "edgeship.eval/1", "model": ev["model"], "samples": ev["samples"], "reference": ev["reference"],
          "artifacts": {e["artifact"]: {k: v for k, v in e.items() if k not in ("artifact_digest", "config_digest")}
                        for e in ev["entries"].values()}}
    assert set(eval_entries(v1)) == set(eval_entries(ev))   # v1 entries read as device "local"
    eval_file(project).write_text(json.dumps(v1))
    code, _, _ = gate(capsys, cli_project(project))
    bad = failed(project)
    eval_rows = [c for c in report(project)["checks"] if c["metric"] in ("accuracy_drop", "cosine_mean")]
    assert code == 1 and eval_rows and all(c["name"] in bad for c in eval_rows)
    assert all("records no artifact digest" in c["detail"] for c in eval_rows)
    assert all(c["metric"] in ("accuracy_drop", "cosine_mean") for c in bad.values())


def test_old_result_without_artifact_digest_is_stale(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = project / "build" / "results" / "local" / "onnx-fp32.json"
    r = json.loads(path.read_text())
    del r["artifact"]["artifact_digest"]      # as written before digests: manifest_sha256 only
    path.write_text(json.dumps(r))
    code, _, _ = gate(capsys, cli_project(project))
    bad = failed(project)
    assert code == 1 and sorted(bad) == ["local.onnx-fp32.latency_p90_ms", "local.onnx-fp32.peak_memory_mb"]
    assert "records no artifact digest" in bad["local.onnx-fp32.peak_memory_mb"]["detail"]


def test_corrupt_artifact_and_missing_result_keep_their_checks(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 11 case 3: a wildcard latency budget must not lose the checks of an artifact whose
    profile failed (result removed); an artifact that no longer verifies is refused outright."""
    cfg = cli_project(project)
    assert gate(capsys, cfg)[0] == 0
    clean = {c["name"] for c in report(project)["checks"]}
    (project / "build" / "results" / "local" / "tflite-int8.json").unlink()
    (project / "build" / "results" / "local" / "onnx-fp16.json").unlink()
    code, out, err = gate(capsys, cfg)
    assert code == 1, out + err
    assert {c["name"] for c in report(project)["checks"]} == clean      # nothing dropped
    bad = failed(project)
    assert sorted(bad) == ["local.onnx-fp16.latency_p90_ms", "local.onnx-fp16.peak_memory_mb",
                           "local.tflite-int8.latency_p90_ms", "local.tflite-int8.peak_memory_mb"]
    assert bad["local.onnx-fp16.latency_p90_ms"]["detail"] == (
        "no profile result for onnx-fp16 on local; run `edgeship profile --device local --target onnx --precision fp16`")
    assert bad["local.tflite-int8.peak_memory_mb"]["rerun"] == "edgeship profile --device local --target tflite --precision int8"

    # the manifest is an integrity boundary: a tampered artifact is one line, exit 2, no verdicts
    before = (project / "build" / "reports" / "report.json").read_bytes()
    model = project / ART / "tflite-int8" / "model.tflite"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model.write_bytes(bytes(data))
    code, out, err = gate(capsys, cfg)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, out + err
    assert "tflite-int8/model.tflite: sha256 does not match" in lines[0] and "edgeship export" in lines[0]
    assert (project / "build" / "reports" / "report.json").read_bytes() == before


def test_eval_lookup_per_device_and_for_any_device(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    board = '\n[devices.board]\nkind = "ssh"\nhost = "pi@board.invalid"\n'
    budgets = ('\n[[budgets]]\ndevice = "board"\ntarget = "onnx"\nprecision = "int8"\nmin_cosine = 0.99\n'
               '\n[[budgets]]\ndevice = "board"\ntarget = "tflite"\nprecision = "int8"\nmin_cosine = 0.99\n')
    # the demo's latency budget names "local" only, so the board needs no profile results
    cfg = cli_project(project, append=board + budgets)
    ev = json.loads(eval_file(project).read_text())
    on_board = {**ev["entries"]["local/onnx-int8"], "device": "board", "cosine_mean": 0.5}
    ev["entries"]["board/onnx-int8"] = on_board
    del ev["entries"]["local/onnx-fp16"]
    eval_file(project).write_text(json.dumps(ev))
    code, out, err = gate(capsys, cfg)
    assert code == 1, out + err
    rows = {c["name"]: c for c in report(project)["checks"]}
    # "*" budget: one row per evaluated device
    assert rows["local.onnx-int8.cosine_mean"]["passed"] and rows["local.onnx-int8.accuracy_drop"]["passed"]
    assert not rows["board.onnx-int8.cosine_mean"]["passed"]
    assert rows["board.onnx-int8.cosine_mean"]["value"] == 0.5
    assert rows["board.onnx-int8.accuracy_drop"]["passed"]
    # the board budgets: one found (and failing), one without an entry
    board_rows = [c for c in report(project)["checks"] if c["budget"] in (3, 4)]
    assert sorted((c["name"], c["passed"]) for c in board_rows) == [
        ("board.onnx-int8.cosine_mean", False), ("board.tflite-int8.cosine_mean", False)]
    missing = next(c for c in board_rows if c["artifact"] == "tflite-int8")
    assert missing["detail"].startswith("no eval entry board/tflite-int8")
    assert missing["rerun"] == "edgeship eval --device board --target tflite --precision int8"
    # an artifact no device evaluated: one FAIL row for the "*" budget
    none = rows["*.onnx-fp16.cosine_mean"]
    assert not none["passed"] and none["detail"] == (
        "no eval entry for onnx-fp16 on any device; run `edgeship eval --target onnx --precision fp16`")
    assert sorted(c["name"] for c in report(project)["checks"] if not c["passed"]) == [
        "*.onnx-fp16.cosine_mean", "board.onnx-int8.cosine_mean", "board.onnx-int8.cosine_mean",
        "board.tflite-int8.cosine_mean"]


def test_no_eval_json_fails_the_eval_checks(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    eval_file(project).unlink()
    code, _, _ = gate(capsys, cli_project(project))
    bad = failed(project)
    assert code == 1 and bad and all(c["metric"] in ("accuracy_drop", "cosine_mean") for c in bad.values())
    assert all(c["device"] == "*" and c["rerun"].startswith("edgeship eval --target ") for c in bad.values())


def one_line_exit_2(code: int, err: str) -> str:
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_unknown_device_is_exit_2_with_suggestion(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    line = one_line_exit_2(*gate(capsys, cli_project(project), "--device", "lcoal")[::2])
    assert "gate --device 'lcoal': no such device" in line and "did you mean 'local'?" in line
    assert not (project / "build" / "reports" / "report.json").exists()


def test_zero_checks_is_exit_2(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = (ROOT / "edgeship.toml").read_text()
    text = text[:text.index("[[budgets]]")] + (
        '[devices.board]\nkind = "ssh"\nhost = "pi@board.invalid"\n\n'
        '[[budgets]]\ndevice = "local"\nlatency_ms = { p90 = 5.0 }\n')
    cfg = project / "edgeship.toml"
    cfg.write_text(text)
    line = one_line_exit_2(*gate(capsys, cfg, "--device", "board")[::2])
    assert "no [[budgets]] entry" in line and "applies to device 'board'" in line
    assert not (project / "build" / "reports" / "report.json").exists()


@pytest.mark.parametrize("value", ["nan", "-1", "inf", "1.0", "-inf"])
def test_threshold_must_be_a_finite_fraction(project: Path, capsys: pytest.CaptureFixture[str], value: str) -> None:
    line = one_line_exit_2(*gate(capsys, cli_project(project), f"--threshold={value}")[::2])
    assert line.startswith("edgeship: error: --threshold ") and "[0, 1)" in line


def test_corrupt_eval_json_and_result_file_are_one_line(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = cli_project(project)
    text = eval_file(project).read_text()
    eval_file(project).write_text(text[: len(text) // 2])
    line = one_line_exit_2(*gate(capsys, cfg)[::2])
    assert "eval.json: corrupt eval report" in line
    eval_file(project).write_text(text)
    (project / "build" / "results" / "local" / "onnx-fp32.json").write_text("[]")
    line = one_line_exit_2(*gate(capsys, cfg)[::2])
    assert "onnx-fp32.json: not a profile result (a JSON list" in line


def test_scan_lists_broken_artifacts_and_refuses_unnamed_junk(project: Path) -> None:
    from edgeship.artifact.selection import scan_artifacts
    from edgeship.config import load_config
    from edgeship.errors import ArtifactError

    cfg = load_config(cli_project(project))
    shutil.copytree(project / ART / "onnx-fp32", project / ART / "tflite-fp32", dirs_exist_ok=True)
    good, broken = scan_artifacts(cfg)
    assert "tflite-fp32" not in {r.name for r in good} and "onnx-fp32" in {r.name for r in good}
    (b,) = [b for b in broken if b.name == "tflite-fp32"]
    assert (b.target, b.precision) == ("tflite", "fp32") and "the directory name says otherwise" in b.reason
    (project / ART / "notes").mkdir()
    with pytest.raises(ArtifactError, match="notes: no manifest.json"):
        scan_artifacts(cfg)


def test_another_config_digest_is_a_warning_not_a_fail(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from edgeship.config import load_config

    cfg = cli_project(project)
    digest = load_config(cfg).digest
    for f in (project / "build" / "results" / "local").glob("*.json"):
        r = json.loads(f.read_text())
        r["config_digest"] = digest
        f.write_text(json.dumps(r))
    ev = json.loads(eval_file(project).read_text())
    for e in ev["entries"].values():
        e["config_digest"] = digest
    eval_file(project).write_text(json.dumps(ev))
    code, out, _ = gate(capsys, cfg)
    assert code == 0 and report(project)["warnings"] == [] and "warning:" not in out

    path = project / "build" / "results" / "local" / "onnx-int8.json"
    r = json.loads(path.read_text())
    r["config_digest"] = "f" * 64      # profiled under another edgeship.toml
    path.write_text(json.dumps(r))
    code, out, err = gate(capsys, cfg)
    (warning,) = report(project)["warnings"]
    assert code == 0 and warning.startswith("1 piece(s) of evidence were measured under another edgeship.toml")
    assert f"warning: {warning}" in " ".join(err.split()) and "warning:" not in out   # wrapped at 100 columns and f"> warning: {warning}" in (project / "build" / "reports" / "report.md").read_text()
