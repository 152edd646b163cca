"""Reports rendered from one report.json dict (never from the clock or the filesystem), so
``edgeship report --from report.json`` reproduces them byte for byte.

    report.json   versioned schema, verdicts, raw samples, environment (CI archives this)
    report.md     a pull-request comment
    junit.xml     one testcase per budget check: CI systems show verdicts natively
    report.html   one self-contained page with plots (see html.py)
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgeship.artifact.atomic import publish_set
from edgeship.errors import UsageError
from edgeship.untrusted import dumps, finite

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
    """Render every report, then publish the set all together or not at all (fsutil.publish_set).

    A failure (a name that is a directory, an unwritable or non-directory ``out_dir``) is one
    UsageError line, and the previous set stays whole.
    """
    out_dir = Path(out_dir)
    # what report.json holds is what every renderer shows: 'report --from' reproduces them
    report = finite(report)
    files: dict[str, bytes] = {}
    if json_too:
        # strict JSON: a non-finite number (no statistic) is null, never NaN that parsers reject
        files["report.json"] = (dumps(report, indent=1) + "\n").encode("utf-8")
    for name, render in renderers(html).items():
        files[name] = render(report).encode("utf-8")
    try:
        return publish_set(out_dir, files)
    except OSError as exc:
        where = exc.filename or out_dir
        raise UsageError(f"{where}: cannot write the reports ({exc.strerror or exc}); "
                         "choose a writable directory (the previous reports are unchanged)") from None
