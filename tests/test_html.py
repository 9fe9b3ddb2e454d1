"""The HTML report: escaped text, self-contained (no network, no scripts), figures, and a
headless-Chromium rendering check where Chromium is installed."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from circuitcheck.cli import main
from circuitcheck.report.html import run_html
from circuitcheck.report.svg import Heatmap, heatmap, interval_bar, parse_threshold
from tests.conftest import HYPOTHESES, REPO

EVIL = '<script>alert("x")</script><img src=x onerror=alert(1)>'


def claim(claim_id: str, verdict: str, as_expected: bool | None, **extra: object) -> dict:
    return {
        "id": claim_id, "kind": "ablation", "statement": f"statement of {claim_id}", "verdict": verdict,
        "estimate": 0.7, "ci_low": 0.6, "ci_high": 0.8, "threshold": ">= 0.5", "metric": "accuracy",
        "sentence": "what was found", "seed_figure": None, "expect": "holds", "as_expected": as_expected,
        "details": {"n_examples": 10},
    } | extra


def document(claims: list[dict], name: str = "demo") -> dict:
    return {
        "schema_version": 1, "name": name,
        "summary": {
            "total": len(claims),
            "passed": 1,
            "failed": 1,
            "inconclusive": 0,
            "refuted_as_expected": 0,
            "exit_code": 1,
        },
        "claims": claims,
        "statistics": {
            "method": "percentile bootstrap over sequences",
            "resamples": 1000,
            "seed": 0,
            "confidence": 0.95,
        },
        "self_checks": [{"name": "finite", "passed": True, "detail": "all logits finite"}],
        "timing": {"seconds": 1.0, "forward_rows": 10},
        "provenance": {"model": "trigram", "command": "circuitcheck run x.yaml", "note": EVIL},
    }


def assert_self_contained(html: str) -> None:
    lowered = html.lower()
    assert not re.search(r"(https?|ftp):|//[a-z0-9]", lowered), "a network reference"
    assert not re.search(r"<[a-z]+[^>]*\s(src|href)=\"(?!#)", lowered), "a link to something outside the page"
    for banned in ("<script", "<link", "@import", "url(", "<iframe", "<object", "<embed"):
        assert banned not in lowered, banned


def test_every_text_field_is_escaped():
    evil = claim("T1", "fail", False, statement=EVIL, sentence=EVIL, seed_figure=EVIL, metric=EVIL,
                 details={EVIL: EVIL, "nested": {"k": EVIL}})
    html = run_html(document([evil, claim("T2", "pass", True)], name=EVIL))
    assert "<script>" not in html and "<img" not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html
    assert_self_contained(html)


def test_verdict_cards_show_marks_and_colours():
    refuted = claim("R", "fail", True, expect="refuted")
    html = run_html(
        document([claim("P", "pass", True), claim("F", "fail", False), claim("I", "inconclusive", None), refuted])
    )
    assert '<span class="badge pass">PASS</span>' in html
    assert '<span class="badge fail">FAIL</span>' in html
    assert '<span class="badge inconclusive">INCONCLUSIVE</span>' in html
    assert '<span class="badge pass">REFUTED (expected)</span>' in html
    assert html.count('<section class="card') == 4


def test_ladder_details_draw_a_bar_chart():
    ladder = claim(
        "T6", "pass", True, kind="ordering", details={"estimates": {"T6-dla": 0.16, "T5": 0.76, "full": 0.9}}
    )
    html = run_html(document([ladder]))
    assert 'aria-label="T6: rung estimates in the declared order"' in html
    assert html.count("<rect") >= 3 and ">T6-dla<" in html and ">0.76<" in html


def test_threshold_parsing_and_undefined_estimates():
    assert parse_threshold(">= 0.8") == (">=", 0.8) and parse_threshold("<= 1e-3") == ("<=", 0.001)
    assert parse_threshold("about 3") is None and parse_threshold(None) is None
    assert "estimate undefined" in interval_bar(None, None, None, ">= 0.5", "#000")
    bar = interval_bar(0.25, 0.2, 0.3, "<= 0.5", "#000", width=216)
    # the [0, 1] axis padded by 4% on each side, 200 px wide from x = 8: 8 + 0.29 / 1.08 * 200
    assert 'cx="61.7"' in bar


def test_heatmap_draws_cells_above_the_floor_and_marks_roles():
    svg = heatmap(Heatmap("head 0.0 <mean>", [[1.0, 0.0], [0.5, 0.5]], {1: "Y"}))
    assert svg.count('width="6" height="6"') == 3  # the zero cell stays background
    assert "head 0.0 &lt;mean&gt;" in svg and "<title>Y</title>" in svg


@pytest.fixture(scope="module")
def trigram_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("html")
    assert main(["run", str(HYPOTHESES / "trigram.yaml"), "--report-dir", str(out), "--quiet"]) == 0
    return out / "trigram.html"


def test_run_writes_a_self_contained_html_report_with_an_attention_heatmap(trigram_report):
    html = trigram_report.read_text()
    assert_self_contained(html)
    assert html.count('<section class="card v-pass"') == 7
    assert 'aria-label="head 0.0: mean over 1000 sequences"' in html
    assert re.search(r'aria-label="head 0\.0: sequence \d+, rows by role"', html)
    assert "<h2>Self-checks</h2>" in html and "<h2>Provenance</h2>" in html and "checkpoint_sha256" in html


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (Debian: apt-get install chromium)"
)


def check_html(html: Path, png: Path) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, str(REPO / "scripts" / "check_html.py"), str(html), "--out", str(png), "--height", "1200"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180)


@needs_chromium
def test_chromium_renders_the_report_and_shows_the_verdicts(tmp_path):
    html = tmp_path / "mixed.html"
    html.write_text(
        run_html(document([claim("P", "pass", True), claim("F", "fail", False), claim("I", "inconclusive", None)]))
    )
    proc = check_html(html, tmp_path / "mixed.png")
    assert proc.returncode == 0, proc.stderr
    assert "verdict colours seen: fail, inconclusive, pass" in proc.stdout


@needs_chromium
def test_the_rendering_check_fails_on_a_blank_page(tmp_path):
    html = tmp_path / "blank.html"
    html.write_text('<!DOCTYPE html><html><body><span class="badge pass"></span></body></html>')
    proc = check_html(html, tmp_path / "blank.png")
    assert proc.returncode == 1
    assert "looks blank" in proc.stderr and "no 'pass' badge colour" in proc.stderr
