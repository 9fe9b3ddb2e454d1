"""A checkpoint series in the reports: per claim, a line chart of its estimate against step with the interval as
a band and the threshold dashed (inline SVG, no scripts), and the Markdown table step | estimate | CI | verdict.

Reads the ``series`` key of a comparison document (circuitcheck/comparison/series.py builds it).
"""

from __future__ import annotations

import math
from html import escape
from typing import Any

from circuitcheck.report.markdown_escape import md_text
from circuitcheck.report.svg import FAINT, INK, VERDICT_COLORS, parse_band, parse_threshold
from circuitcheck.report.text import num

WIDTH, HEIGHT = 520, 200
LEFT, RIGHT, TOP, BOTTOM = 60.0, 12.0, 14.0, 30.0
LINE = "#0969da"


def _finite(*xs: Any) -> bool:
    return all(isinstance(x, (int, float)) and math.isfinite(x) for x in xs)


def _when(step: Any) -> str:
    return "never" if step is None else str(step)


def summary_text(claim: dict[str, Any]) -> str:
    """"passes from step 600; flips at 600 (pass), 900 (fail)"."""
    flips = ", ".join(f"{f['step']} ({f['to']})" for f in claim["flips"]) or "none"
    return f"passes from step {_when(claim['passes_from'])} and stays passing; flips at: {flips}"


def series_chart(claim: dict[str, Any], x_label: str = "step") -> str:
    """The claim's estimate (line and dots, coloured by verdict) and interval (band) against step."""
    pts = [p for p in claim["points"] if _finite(p["step"])]
    bound, band = parse_threshold(claim["threshold"]), parse_band(claim["threshold"])
    lines = [bound[1]] if bound else list(band) if band else []
    # The axis spans the estimates and the threshold, not the intervals: before a circuit forms, a ratio over a
    # near-zero denominator can have an interval a hundred times the estimates', which would flatten every curve.
    ys = [p["estimate"] for p in pts if _finite(p["estimate"])] + lines
    lo, hi = min([0.0, *ys]), max([1.0, *ys])
    pad = (hi - lo) * 0.05
    lo, hi = lo - pad, hi + pad
    steps = [p["step"] for p in pts] or [0]
    x0, x1 = min(steps), max(steps)
    span = (x1 - x0) or 1

    def at_x(s: float) -> float:
        return LEFT + (s - x0) / span * (WIDTH - LEFT - RIGHT)

    def at_y(v: float) -> float:
        return TOP + (hi - v) / (hi - lo) * (HEIGHT - TOP - BOTTOM)

    label = escape(f"{claim['id']}: estimate against {x_label}")
    parts = [f'<svg width="{WIDTH}" height="{HEIGHT}" role="img" aria-label="{label}">']
    base = HEIGHT - BOTTOM
    parts.append(f'<line x1="{LEFT}" y1="{base}" x2="{WIDTH - RIGHT}" y2="{base}" stroke="{FAINT}"/>')
    parts.append(f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{base}" stroke="{FAINT}"/>')
    for v in (lo + pad, hi - pad):
        parts.append(f'<text x="{LEFT - 4}" y="{at_y(v) + 4:.1f}" font-size="10" text-anchor="end" '
                     f'fill="{INK}">{escape(num(float(v)))}</text>')
    shown_until = -float("inf")
    for s in steps:  # a label that would overlap the previous one is left out (its dot's tooltip names the step)
        width = 6.0 * len(str(s))
        if at_x(s) - width / 2 < shown_until + 4:
            continue
        shown_until = at_x(s) + width / 2
        parts.append(f'<text x="{at_x(s):.1f}" y="{base + 14}" font-size="10" text-anchor="middle" '
                     f'fill="{INK}">{escape(str(s))}</text>')
    parts.append(f'<text x="{(LEFT + WIDTH - RIGHT) / 2:.1f}" y="{HEIGHT - 2}" font-size="10" '
                 f'text-anchor="middle" fill="{INK}">{escape(x_label)}</text>')
    for v in lines:
        parts.append(f'<line x1="{LEFT}" y1="{at_y(v):.1f}" x2="{WIDTH - RIGHT}" y2="{at_y(v):.1f}" stroke="{INK}" '
                     f'stroke-dasharray="4,3"><title>threshold {escape(claim["threshold"])}</title></line>')
    banded = [p for p in pts if _finite(p["ci_low"], p["ci_high"])]
    if banded:
        def clip(v: float) -> float:
            return at_y(min(max(v, lo), hi))

        upper = " ".join(f"{at_x(p['step']):.1f},{clip(p['ci_high']):.1f}" for p in banded)
        lower = " ".join(f"{at_x(p['step']):.1f},{clip(p['ci_low']):.1f}" for p in reversed(banded))
        parts.append(f'<polygon points="{upper} {lower}" fill="{LINE}" fill-opacity="0.18" stroke="none"/>')
    drawn = [p for p in pts if _finite(p["estimate"])]
    if drawn:
        path = " ".join(f"{at_x(p['step']):.1f},{at_y(p['estimate']):.1f}" for p in drawn)
        parts.append(f'<polyline points="{path}" fill="none" stroke="{LINE}" stroke-width="2"/>')
    for p in drawn:
        colour = VERDICT_COLORS.get(p["verdict"] or "n/a", VERDICT_COLORS["n/a"])
        tip = escape(f"step {p['step']}: {num(p['estimate'])} [{num(p['ci_low'])}, {num(p['ci_high'])}] {p['verdict']}")
        parts.append(f'<circle cx="{at_x(p["step"]):.1f}" cy="{at_y(p["estimate"]):.1f}" r="4" fill="{colour}" '
                     f'stroke="white"><title>{tip}</title></circle>')
    parts.append("</svg>")
    return "".join(parts)


def series_html(series: dict[str, Any]) -> str:
    """One chart per claim, each with when it passes from and where it flips."""
    out = [f"<p>Each claim's estimate against {escape(series['x'])}: the band is the interval (cut at the chart's "
           "edge where it runs past the estimates and threshold), the dashed line the threshold, dots coloured by "
           "verdict; hover a dot for its numbers.</p>"]
    for claim in series["claims"]:
        out.append(f"<h3>{escape(claim['id'])}</h3><p>{escape(summary_text(claim))}</p>"
                   f"{series_chart(claim, series['x'])}")
    return "\n".join(out)


def series_markdown(series: dict[str, Any]) -> str:
    """Per claim: when it passes from, where it flips, and the table step | estimate | CI | verdict."""
    out = ["## Series", ""]
    for claim in series["claims"]:
        out += [f"### {md_text(claim['id'])}", "", md_text(summary_text(claim)) + ".", "",
                f"| {series['x']} | estimate | CI | verdict |", "|---|---|---|---|"]
        for p in claim["points"]:
            ci = "n/a" if p["ci_low"] is None else f"[{num(p['ci_low'])}, {num(p['ci_high'])}]"
            out.append(f"| {p['step']} | {num(p['estimate'])} | {ci} | {p['verdict'] or 'not run'} |")
        out.append("")
    return "\n".join(out)
