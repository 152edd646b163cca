"""report.html, progress output and the Python API."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import edgeship
from tests.conftest import ROOT, cli_project, require_tool


@pytest.fixture(scope="module")
def gated(profiled: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo's gate reports, written once for this module (the tests only read them)."""
    root = tmp_path_factory.mktemp("gated")
    shutil.copytree(profiled / "build", root / "build")
    result = edgeship.gate(cli_project(root))
    assert result.passed and result.exit_code == 0
    return root / "build" / "reports" / "report.html"


def test_html_is_self_contained_with_plots(gated: Path) -> None:
    page = gated.read_text()
    assert page.startswith("<!doctype html>") and page.count("<svg") == 6     # 3 plots x (wide, narrow)
    assert "Latency distribution" in page and "Fidelity vs latency" in page and "Memory: init vs steady state" in page
    assert ">PASS<" in page and "#1a7f37" in page           # colour plus text
    # nothing is fetched when the file is opened: no external src/href/url(), no scripts
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "url(http" not in page and "<script" not in page and "@import" not in page


def test_api_mirrors_the_cli(profiled: Path, tmp_path: Path) -> None:
    from edgeship.artifact.manifest import Manifest
    from edgeship.gating.checks import GateReport

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
                         shell=True, check=False, capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stdout
    assert "onnx-fp32" in out.stdout
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f]", out.stdout), repr(out.stdout[:500])


def test_progress_on_a_tty_redraws_in_place() -> None:
    import io

    from edgeship.ui.progress import Progress

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


def chromium_argv(chromium: str, tmp: Path, netlog: Path) -> list[str]:
    """Headless Chromium with the network disabled (every host name fails to resolve, every
    connection goes to a closed loopback proxy) and a NetLog of every request it starts."""
    return [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync",
            "--disable-background-networking", "--disable-component-update", "--disable-extensions",
            f"--user-data-dir={tmp / 'profile'}", "--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=127.0.0.1:9",
            f"--log-net-log={netlog}", "--hide-scrollbars", "--force-device-scale-factor=1"]


def page_requests(netlog: Path) -> list[str]:
    """URLs the page asked for. Chromium's own background requests (updates, accounts) are
    logged too; the page's carry its file:// network isolation key."""
    import json

    log = json.loads(netlog.read_text())
    start = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    return sorted({e["params"]["url"] for e in log["events"] if e["type"] == start
                   and str((e.get("params") or {}).get("network_isolation_key", "")).startswith("file://")})


def open_in_chromium(page: Path, tmp: Path, *mode: str) -> tuple[list[str], str]:
    chromium = require_tool("chromium", "apt-get install chromium")
    tmp.mkdir()
    netlog = tmp / "netlog.json"
    out = subprocess.run([*chromium_argv(chromium, tmp, netlog), *mode, page.as_uri()],
                         check=False, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return page_requests(netlog), out.stdout


def test_html_makes_no_request_in_chromium(gated: Path, tmp_path: Path) -> None:
    # the detector works: the same page with one remote image is caught
    leaky = tmp_path / "leaky.html"
    leaky.write_text(gated.read_text().replace("</body>", '<img src="http://example.invalid/logo.png"></body>'))
    requests, _ = open_in_chromium(leaky, tmp_path / "a", "--dump-dom")
    assert requests == ["http://example.invalid/logo.png"]
    # the report: rendered (its DOM has every plot), nothing requested
    requests, dom = open_in_chromium(gated, tmp_path / "b", "--dump-dom")
    assert requests == [] and dom.count("<svg") == 6 and "Latency distribution" in dom
    # and at a phone's width, where the narrow drawings show
    shot = tmp_path / "phone.png"
    requests, _ = open_in_chromium(gated, tmp_path / "c", "--window-size=420,2400", f"--screenshot={shot}")
    assert requests == [] and shot.stat().st_size > 20_000


def test_report_side_by_side_with_a_baseline(gated: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from edgeship.cli import main

    reports = gated.parent
    base = tmp_path / "old.json"
    shutil.copy(reports / "report.json", base)
    out = tmp_path / "side"
    assert main(["report", "--from", str(reports / "report.json"), "--baseline", str(base), "--out", str(out)]) == 0
    page = (out / "report.html").read_text()
    assert "Baseline (" in page and "This report (" in page and page.count("<svg") == 12
