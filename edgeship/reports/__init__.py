"""Reports rendered from one report.json dict (never from the clock or the filesystem), so
``edgeship report --from report.json`` reproduces them byte for byte.

    report.json   versioned schema, verdicts, raw samples, environment (CI archives this)
    report.md     a pull-request comment
    junit.xml     one testcase per budget check: CI systems show verdicts natively
    report.html   one self-contained page with plots (see html.py)
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgeship.fsutil import write_text_atomic

Renderer = Callable[[dict[str, Any]], str]


def renderers(html: bool = True) -> dict[str, Renderer]:
    from edgeship.reports.junit import render_junit
    from edgeship.reports.markdown import render_markdown

    out: dict[str, Renderer] = {"report.md": render_markdown, "junit.xml": render_junit}
    if html:
        from edgeship.reports.html import render_html

        out["report.html"] = render_html
    return out


def write_reports(report: dict[str, Any], out_dir: Path, json_too: bool = True, html: bool = True) -> list[Path]:
    out_dir = Path(out_dir)
    written = []
    if json_too:
        write_text_atomic(out_dir / "report.json", json.dumps(report, indent=1) + "\n")
        written.append(out_dir / "report.json")
    for name, render in renderers(html).items():
        write_text_atomic(out_dir / name, render(report))
        written.append(out_dir / name)
    return written
