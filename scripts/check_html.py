"""Render an HTML report in headless Chromium, offline, and check that it shows something.

    python scripts/check_html.py reports/trigram.html [--out shot.png] [--width 1280] [--height 3000]

Chromium runs with every host name unresolvable, so a report that needed the network
would render incomplete. Checks: the screenshot exists, is not blank (many colours),
and shows the colour of every verdict badge the HTML contains. Exit 0 when all hold,
1 when one fails, 2 when Chromium is not installed (Debian: apt-get install chromium).
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

BADGE_COLORS = {"pass": (0x1A, 0x7F, 0x37), "fail": (0xCF, 0x22, 0x2E), "inconclusive": (0x9A, 0x67, 0x00)}
MIN_COLOURS = 8


def find_chromium() -> str | None:
    return next((p for p in (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")) if p), None)


def screenshot(html: Path, png: Path, width: int, height: int, browser: str) -> None:
    with tempfile.TemporaryDirectory() as profile:
        cmd = [
            browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", f"--user-data-dir={profile}",
            "--host-resolver-rules=MAP * ~NOTFOUND", "--no-first-run", f"--window-size={width},{height}",
            f"--screenshot={png.resolve()}", html.resolve().as_uri(),
        ]
        subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)


def verdicts_in(html_text: str) -> set[str]:
    return set(re.findall(r'class="badge (pass|fail|inconclusive)"', html_text))


def check_png(png: Path, expected: set[str]) -> list[str]:
    """Problems with the screenshot; empty when it rendered and shows every expected verdict colour."""
    from PIL import Image

    if not png.is_file() or png.stat().st_size == 0:
        return [f"no screenshot at {png}"]
    image = Image.open(png).convert("RGB")
    colours = image.getcolors(maxcolors=1 << 20) or []
    problems = []
    if len(colours) < MIN_COLOURS:
        problems.append(f"screenshot looks blank: {len(colours)} colour(s)")
    seen = {rgb for _, rgb in colours}
    for verdict in sorted(expected):
        if BADGE_COLORS[verdict] not in seen:
            problems.append(f"no {verdict!r} badge colour {BADGE_COLORS[verdict]} in the screenshot")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("html", type=Path)
    parser.add_argument("--out", type=Path, default=None, help="the PNG to write (default: next to the HTML)")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=3000)
    args = parser.parse_args(argv)
    browser = find_chromium()
    if browser is None:
        print("chromium is not installed (Debian: apt-get install chromium); nothing checked", file=sys.stderr)
        return 2
    if not args.html.is_file():
        print(f"{args.html}: no such file", file=sys.stderr)
        return 1
    png = args.out or args.html.with_suffix(".png")
    png.unlink(missing_ok=True)
    screenshot(args.html, png, args.width, args.height, browser)
    expected = verdicts_in(args.html.read_text())
    problems = check_png(png, expected)
    for problem in problems:
        print(f"{args.html}: {problem}", file=sys.stderr)
    if not problems:
        print(f"ok: {png} ({args.width}x{args.height}; verdict colours seen: {', '.join(sorted(expected)) or 'none'})")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
