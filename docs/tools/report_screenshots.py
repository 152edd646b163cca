"""Screenshots of a report.html in headless Chromium at a desktop and a phone width.

    .venv/bin/python docs/tools/report_screenshots.py build/reports/report.html [--out docs/img]

writes report-1400.png and report-420.png (full page, trailing blank space trimmed), the images
docs/reports.md shows. Needs Debian's ``chromium`` (apt-get install chromium) and Pillow (comes
with matplotlib). The page is loaded with the network disabled, as the test does.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

WIDTHS = (1400, 420)
MAX_HEIGHT = 12000   # px: taller pages are cut there


def chromium_argv(chromium: str, profile: Path) -> list[str]:
    """A headless Chromium that cannot reach the network (every host name fails to resolve and
    every connection goes to a closed loopback proxy) and leaves nothing behind."""
    return [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync",
            "--disable-background-networking", "--disable-component-update", "--disable-extensions",
            "--hide-scrollbars", "--force-device-scale-factor=1", f"--user-data-dir={profile}",
            "--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=127.0.0.1:9"]


def screenshot(page: Path, width: int, out: Path, chromium: str) -> Path:
    from PIL import Image, ImageChops

    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "shot.png"
        subprocess.run([*chromium_argv(chromium, Path(tmp) / "profile"), f"--window-size={width},{MAX_HEIGHT}",
                        f"--screenshot={raw}", page.resolve().as_uri()], check=True, capture_output=True, timeout=120)
        img = Image.open(raw).convert("RGB")
        # trim the blank space below the page (the window is taller than the page)
        box = ImageChops.difference(img, Image.new("RGB", img.size, (255, 255, 255))).getbbox()
        if box:
            img = img.crop((0, 0, width, min(img.height, box[3] + 24)))
        img.quantize(colors=256).save(out, optimize=True)   # a palette PNG: a third of the bytes, text stays sharp
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("report", type=Path, help="a report.html written by 'edgeship gate' or 'edgeship report'")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "img")
    args = ap.parse_args(argv)
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        print("chromium not found; install it: apt-get install chromium", file=sys.stderr)
        return 2
    if not args.report.is_file():
        print(f"{args.report}: no such report.html; run 'edgeship gate' first", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    for width in WIDTHS:
        print(screenshot(args.report, width, args.out / f"report-{width}.png", chromium))
    return 0


if __name__ == "__main__":
    sys.exit(main())
