"""Inline SVG figures for the HTML report: interval bars, attention heatmaps, bar charts.

Pure functions from numbers to SVG text; every piece of text is escaped. No scripts, no
external references: the figures render in any browser, offline.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from html import escape

VERDICT_COLORS = {"pass": "#1a7f37", "fail": "#cf222e", "inconclusive": "#9a6700", "n/a": "#6e7781"}
INK, FAINT, PASS_ZONE = "#24292f", "#d0d7de", "#dafbe1"
ROLE_COLORS = ("#bf3989", "#fb8500", "#2da44e", "#8250df", "#57606a")


def _num(x: float) -> str:
    return f"{x:.4g}"


def _text(x: float, y: float, content: str, anchor: str = "middle", size: int = 11, extra: str = "") -> str:
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" fill="{INK}"{extra}>'
        f"{escape(content)}</text>"
    )


def parse_threshold(text: str | None) -> tuple[str, float] | None:
    """``">= 0.8"`` -> ``(">=", 0.8)``; anything else -> None."""
    if not text or text[:2] not in (">=", "<="):
        return None
    try:
        return text[:2], float(text[2:])
    except ValueError:
        return None


_BAND = re.compile(r"between (\S+) and (\S+)|within ±(\S+)")


def parse_band(text: str | None) -> tuple[float, float] | None:
    """``"between 0.4 and 0.6"`` -> ``(0.4, 0.6)``; ``"within ±0.1"`` -> ``(-0.1, 0.1)``; anything else -> None."""
    found = _BAND.fullmatch(text or "")
    if found is None:
        return None
    try:
        if found.group(3) is not None:
            margin = float(found.group(3))
            return -margin, margin
        return float(found.group(1)), float(found.group(2))
    except ValueError:
        return None


def interval_bar(estimate: float | None, lo: float | None, hi: float | None, threshold: str | None, color: str,
                 width: int = 360, label: str = "", unit_axis: bool = True) -> str:
    """The estimate (dot) and its interval (bar) on an axis, against the threshold (dashed line,
    passing side shaded; for a band, both ends dashed and the band shaded), or against zero
    (``threshold="0"``, for differences). The axis spans [0, 1] at least when ``unit_axis``. Undefined
    estimates draw an empty axis with a note."""
    height = 52
    bound = parse_threshold(threshold)
    band = parse_band(threshold)
    zero = threshold == "0"
    values = [v for v in (estimate, lo, hi) if v is not None and math.isfinite(v)]
    marks = values + ([bound[1]] if bound else []) + (list(band) if band else [])
    lo_axis = min([0.0, *marks])
    hi_axis = max([1.0 if unit_axis else 0.0, *marks])
    if zero:  # differences: symmetric about zero
        hi_axis = max(abs(lo_axis), abs(hi_axis)) or 0.5
        lo_axis = -hi_axis
    pad = (hi_axis - lo_axis) * 0.04
    lo_axis, hi_axis = lo_axis - pad, hi_axis + pad
    left, right, y = 8.0, width - 8.0, 26.0

    def at(v: float) -> float:
        return left + (v - lo_axis) / (hi_axis - lo_axis) * (right - left)

    parts = [f'<svg width="{width}" height="{height}" role="img" aria-label="{escape(label or "interval")}">']
    if bound:
        x = at(bound[1])
        zone = (x, right - x) if bound[0] == ">=" else (left, x - left)
        parts.append(
            f'<rect x="{zone[0]:.1f}" y="{y - 9}" width="{max(zone[1], 0):.1f}" height="18" fill="{PASS_ZONE}"/>'
        )
        parts.append(
            f'<line x1="{x:.1f}" y1="{y - 12}" x2="{x:.1f}" y2="{y + 12}" stroke="{INK}" stroke-dasharray="3,2"/>'
        )
        anchor = "end" if x > right - 50 else "start" if x < left + 50 else "middle"
        parts.append(_text(x, y - 14, f"threshold {bound[0]} {_num(bound[1])}", anchor, 10))
    if band:  # the passing band shaded, both ends dashed
        x0, x1 = at(band[0]), at(band[1])
        parts.append(
            f'<rect x="{x0:.1f}" y="{y - 9}" width="{max(x1 - x0, 1.0):.1f}" height="18" fill="{PASS_ZONE}"/>'
        )
        for x in (x0, x1):
            parts.append(
                f'<line x1="{x:.1f}" y1="{y - 12}" x2="{x:.1f}" y2="{y + 12}" stroke="{INK}" stroke-dasharray="3,2"/>'
            )
        parts.append(_text((x0 + x1) / 2, y - 14, f"threshold {threshold}", "middle", 10))
    if zero:
        x = at(0.0)
        parts.append(
            f'<line x1="{x:.1f}" y1="{y - 12}" x2="{x:.1f}" y2="{y + 12}" stroke="{INK}" stroke-dasharray="3,2"/>'
        )
        parts.append(_text(x, y - 14, "0", size=10))
    parts.append(f'<line x1="{left}" y1="{y}" x2="{right}" y2="{y}" stroke="{FAINT}"/>')
    parts.append(
        _text(left, y + 22, _num(lo_axis + pad), "start", 10) + _text(right, y + 22, _num(hi_axis - pad), "end", 10)
    )
    if lo is not None and hi is not None and math.isfinite(lo) and math.isfinite(hi):
        x0, x1 = at(lo), at(hi)
        parts.append(
            f'<rect x="{x0:.1f}" y="{y - 4}" width="{max(x1 - x0, 2.0):.1f}" height="8" rx="2" '
            f'fill="{color}" fill-opacity="0.45"/>'
        )
    if estimate is not None and math.isfinite(estimate):
        parts.append(f'<circle cx="{at(estimate):.1f}" cy="{y}" r="5" fill="{color}" stroke="white"/>')
    else:
        parts.append(_text((left + right) / 2, y + 22, "estimate undefined", size=10))
    parts.append("</svg>")
    return "".join(parts)


@dataclass(frozen=True)
class Heatmap:
    """A ``[query][key]`` matrix of attention weights in [0, 1], with optional row annotations."""

    title: str
    values: list[list[float]]
    row_marks: dict[int, str] = field(default_factory=dict)


def _blue(v: float) -> str:
    """White (0) to dark blue (1), square-root scaled so weak attention stays visible."""
    t = math.sqrt(min(max(v, 0.0), 1.0))
    r, g, b = (round(255 + (c - 255) * t) for c in (8, 48, 107))
    return f"#{r:02x}{g:02x}{b:02x}"


def heatmap(h: Heatmap, cell: int = 6) -> str:
    n_q = len(h.values)
    n_k = len(h.values[0]) if n_q else 0
    left, top = 34, 24
    width = max(left + n_k * cell + 70, int(len(h.title) * 6.5) + left)
    height = top + n_q * cell + 30
    parts = [
        f'<svg width="{width}" height="{height}" role="img" aria-label="{escape(h.title)}">',
        _text(left, 14, h.title, "start", 11, ' font-weight="600"'),
        f'<rect x="{left}" y="{top}" width="{n_k * cell}" height="{n_q * cell}" fill="white" stroke="{FAINT}"/>',
    ]
    for q, row in enumerate(h.values):
        for k, v in enumerate(row):
            if v >= 0.01:
                parts.append(
                    f'<rect x="{left + k * cell}" y="{top + q * cell}" width="{cell}" height="{cell}" '
                    f'fill="{_blue(v)}"/>'
                )
    roles = sorted(set(h.row_marks.values()))
    for q, mark in sorted(h.row_marks.items()):
        colour = ROLE_COLORS[roles.index(mark) % len(ROLE_COLORS)]
        parts.append(
            f'<rect x="{left - 9}" y="{top + q * cell}" width="7" height="{cell}" fill="{colour}">'
            f"<title>{escape(mark)}</title></rect>"
        )
    for i, role in enumerate(roles):
        x = left + n_k * cell + 14
        y = top + 100 + i * 14
        parts.append(f'<rect x="{x}" y="{y - 8}" width="9" height="9" fill="{ROLE_COLORS[i % len(ROLE_COLORS)]}"/>')
        parts.append(_text(x + 13, y, role, "start", 10))
    for p in range(0, max(n_q, n_k), 10):
        if p < n_k:
            parts.append(_text(left + p * cell + cell / 2, top + n_q * cell + 11, str(p), size=9))
    parts.append(_text(left + n_k * cell / 2, top + n_q * cell + 24, "key position (rows: query position)", size=10))
    bar_x = left + n_k * cell + 14
    for i in range(10):
        parts.append(
            f'<rect x="{bar_x}" y="{top + (9 - i) * 8}" width="10" height="8" fill="{_blue((i + 0.5) / 10)}"/>'
        )
    parts.append(_text(bar_x + 14, top + 8, "1", "start", 9) + _text(bar_x + 14, top + 80, "0", "start", 9))
    parts.append("</svg>")
    return "".join(parts)


def bar_chart(bars: list[tuple[str, float | None]], title: str, color: str = "#0969da") -> str:
    """Vertical bars with value labels (the T6 ladder: rung estimates in the declared order)."""
    bar_w, gap, plot_h, top = 70, 18, 140, 26
    width = gap + len(bars) * (bar_w + gap)
    height = top + plot_h + 44
    finite = [v for _, v in bars if v is not None and math.isfinite(v)]
    peak = max([1.0, *finite])
    base_y = top + plot_h
    parts = [
        f'<svg width="{width}" height="{height}" role="img" aria-label="{escape(title)}">',
        _text(gap, 14, title, "start", 11, ' font-weight="600"'),
        f'<line x1="{gap / 2}" y1="{base_y}" x2="{width - gap / 2}" y2="{base_y}" stroke="{INK}"/>',
    ]
    for i, (name, value) in enumerate(bars):
        x = gap + i * (bar_w + gap)
        if value is not None and math.isfinite(value):
            h = max(value, 0.0) / peak * plot_h
            parts.append(f'<rect x="{x}" y="{base_y - h:.1f}" width="{bar_w}" height="{h:.1f}" fill="{color}"/>')
            parts.append(_text(x + bar_w / 2, base_y - h - 4, _num(value), size=10))
        else:
            parts.append(_text(x + bar_w / 2, base_y - 4, "undefined", size=10))
        short = name if len(name) <= 14 else name[:13] + "…"
        parts.append(_text(x + bar_w / 2, base_y + 14, short, size=10))
    parts.append("</svg>")
    return "".join(parts)
