"""report.html, progress output and the Python API."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import edgeship
from tests.conftest import ROOT, cli_project


@pytest.fixture
def gated(profiled: Path, tmp_path: Path) -> Path:
    shutil.copytree(profiled / "build", tmp_path / "build")
    result = edgeship.gate(cli_project(tmp_path))
    assert result.passed and result.exit_code == 0
    return tmp_path / "build" / "reports" / "report.html"


def test_html_is_self_contained_with_plots(gated: Path) -> None:
    page = gated.read_text()
    assert page.startswith("<!doctype html>") and page.count("<svg") == 3
    assert "Latency distribution" in page and "Fidelity vs latency" in page and "Memory: init vs steady state" in page
    assert ">PASS<" in page and "#1a7f37" in page           # colour plus text
    # nothing is fetched when the file is opened: no external src/href/url(), no scripts
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "url(http" not in page and "<script" not in page and "@import" not in page


def test_api_mirrors_the_cli(profiled: Path, tmp_path: Path) -> None:
    from edgeship.gating import GateReport
    from edgeship.manifest import Manifest

    shutil.copytree(profiled / "build", tmp_path / "build")
    cfg = edgeship.load_config(cli_project(tmp_path))
    manifests = edgeship.export(cfg, target="onnx", precision="fp32")
    assert isinstance(manifests[0], Manifest) and manifests[0].precision == "fp32"
    ev = edgeship.evaluate(cfg, target="onnx", precision="int8")
    assert ev["updated"] == ["local/onnx-int8"] and ev["entries"]["local/onnx-int8"]["accuracy_drop"] <= 0.01
    edgeship.evaluate(cfg)            # the gate's budgets need every artifact evaluated
    # the re-export made onnx-fp32 a new artifact: its old profile result no longer counts
    stale = edgeship.gate(cfg, write=False)
    assert [c.check.name for c in stale.checks if not c.passed] == [
        "local.onnx-fp32.latency_p90_ms", "local.onnx-fp32.peak_memory_mb"]
    edgeship.profile(cfg, target="onnx", precision="fp32")
    res = edgeship.gate(cfg, write=False)
    assert isinstance(res, GateReport) and all(c.verdict.value in ("PASS", "SKIPPED") for c in res.checks)


def test_export_piped_has_no_control_characters(tmp_path: Path) -> None:
    cfg = cli_project(tmp_path)
    env = {"PATH": "/usr/bin:/bin", "EDGESHIP_CACHE_DIR": str(ROOT / "build" / "cache"), "HOME": str(tmp_path)}
    out = subprocess.run(f"{sys.executable} -m edgeship --config '{cfg}' export --target onnx --precision fp32 2>&1 | cat",
                         shell=True, capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stdout
    assert "onnx-fp32" in out.stdout
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f]", out.stdout), repr(out.stdout[:500])


def test_progress_on_a_tty_redraws_in_place() -> None:
    import io

    from edgeship.progress import Progress

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    s = Tty()
    with Progress(s, total=2) as p:
        p.event("export m onnx-fp32 ...")
        p.event("export m onnx-int8 ...")
    text = s.getvalue()
    # redrawn in place (rich Live: carriage return + erase line), erased when done
    assert "\r" in text and "\x1b[2K" in text and "[2/2]" in text and "onnx-int8 ..." in text
    assert text.rstrip().endswith("\x1b[2K") or "onnx-int8" not in text.rsplit("\x1b[2K", 1)[1]
    plain = io.StringIO()
    Progress(plain).event("export m onnx-fp32 ...")
    assert plain.getvalue() == "export m onnx-fp32 ...\n"


@pytest.mark.slow
def test_html_renders_in_headless_chromium(gated: Path, tmp_path: Path) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.fail("chromium is not installed: apt-get install chromium (this test is marked slow)")
    shot = tmp_path / "report.png"
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'prof'}",
                    "--window-size=1200,2400", f"--screenshot={shot}", gated.as_uri()],
                   capture_output=True, timeout=120)
    assert shot.is_file() and shot.stat().st_size > 20_000


def test_report_side_by_side_with_a_baseline(gated: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from edgeship.cli import main

    reports = gated.parent
    base = tmp_path / "old.json"
    shutil.copy(reports / "report.json", base)
    out = tmp_path / "side"
    assert main(["report", "--from", str(reports / "report.json"), "--baseline", str(base), "--out", str(out)]) == 0
    page = (out / "report.html").read_text()
    assert "Baseline (" in page and "This report (" in page and page.count("<svg") == 6
