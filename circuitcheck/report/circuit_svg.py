"""Inline SVG of a circuit: layers as rows, nodes as boxes, the circuit's edges solid, removed edges faint.

Pure functions from a :class:`CircuitDrawing` (names and numbers only) to SVG text; every piece of text
is escaped. Rows run bottom to top: ``embed``/``pos_embed``, then each layer's heads and MLP, then
``logits``. An edge into a head's query, key or value ends at that head's ``q``/``k``/``v`` port.
For a minimality claim, each circuit edge is coloured by its drop and redundant edges are dashed red
and labelled.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

from circuitcheck.report.svg import FAINT, INK, VERDICT_COLORS

PORTS = ("q", "k", "v")
BOX_W, BOX_H, GAP, ROW_H, MARGIN, TOP = 66, 30, 22, 96, 16, 26
REDUNDANT = VERDICT_COLORS["fail"]


@dataclass(frozen=True)
class DrawnEdge:
    """One edge of the full model; ``port`` is ``q``/``k``/``v`` for a head input, else None."""

    name: str
    sender: str
    receiver: str
    port: str | None
    kept: bool
    drop: float | None = None
    redundant: bool = False
    note: str = ""


@dataclass(frozen=True)
class CircuitDrawing:
    """A circuit on its model: ``rows`` of node names, bottom (inputs) to top (logits)."""

    title: str
    rows: tuple[tuple[str, ...], ...]
    edges: tuple[DrawnEdge, ...]
    heads: frozenset[str] = frozenset()
    """Nodes that have q/k/v ports."""


def _green(t: float) -> str:
    """Light (0) to dark green (1): a necessary edge's drop relative to the circuit's largest."""
    t = min(max(t, 0.0), 1.0)
    r, g, b = (round(a + (z - a) * t) for a, z in ((172, 10), (214, 90), (180, 40)))
    return f"#{r:02x}{g:02x}{b:02x}"


def _boxes(d: CircuitDrawing) -> tuple[dict[str, tuple[float, float]], int, int]:
    """Top-left corner of each node's box, and the figure's width and height."""
    widest = max((len(r) for r in d.rows), default=1)
    width = max(2 * MARGIN + widest * (BOX_W + GAP) - GAP, int(len(d.title) * 6.5) + 2 * MARGIN)
    at: dict[str, tuple[float, float]] = {}
    for i, row in enumerate(d.rows):
        y = TOP + (len(d.rows) - 1 - i) * ROW_H
        x0 = (width - (len(row) * (BOX_W + GAP) - GAP)) / 2
        for j, node in enumerate(row):
            at[node] = (x0 + j * (BOX_W + GAP), y)
    return at, width, TOP + (len(d.rows) - 1) * ROW_H + BOX_H + 40


def _end(at: dict[str, tuple[float, float]], node: str, port: str | None) -> tuple[float, float]:
    x, y = at[node]
    share = (PORTS.index(port) + 1) / (len(PORTS) + 1) if port in PORTS else 0.5
    return x + share * BOX_W, y + BOX_H


def _edge(e: DrawnEdge, at: dict[str, tuple[float, float]], peak: float) -> str:
    sx, sy = at[e.sender][0] + BOX_W / 2, at[e.sender][1]
    rx, ry = _end(at, e.receiver, e.port)
    tip = f"<title>{escape(e.note or e.name)}</title>"
    line = f'x1="{sx:.1f}" y1="{sy:.1f}" x2="{rx:.1f}" y2="{ry:.1f}"'
    if not e.kept:
        return f'<line class="edge removed" {line} stroke="{FAINT}" stroke-width="1">{tip}</line>'
    if e.redundant:
        label = f'<text x="{(sx + rx) / 2 + 4:.1f}" y="{(sy + ry) / 2:.1f}" font-size="10" fill="{REDUNDANT}">'
        return (
            f'<line class="edge redundant" {line} stroke="{REDUNDANT}" stroke-width="2.5" '
            f'stroke-dasharray="6,3">{tip}</line>{label}redundant</text>'
        )
    colour = _green(e.drop / peak) if e.drop is not None and peak > 0 else INK
    return f'<line class="edge kept" {line} stroke="{colour}" stroke-width="2.5">{tip}</line>'


def _box(node: str, x: float, y: float, ports: bool) -> str:
    parts = [
        f'<rect x="{x:.1f}" y="{y:.1f}" width="{BOX_W}" height="{BOX_H}" rx="4" fill="white" stroke="{INK}"/>',
        f'<text x="{x + BOX_W / 2:.1f}" y="{y + 13:.1f}" font-size="11" text-anchor="middle" fill="{INK}" '
        f'font-weight="600">{escape(node)}</text>',
    ]
    for p in PORTS if ports else ():
        px = x + (PORTS.index(p) + 1) / (len(PORTS) + 1) * BOX_W
        parts.append(
            f'<circle cx="{px:.1f}" cy="{y + BOX_H:.1f}" r="2.5" fill="{INK}"/>'
            f'<text x="{px:.1f}" y="{y + BOX_H - 4:.1f}" font-size="8" text-anchor="middle" fill="{INK}">{p}</text>'
        )
    return "".join(parts)


def circuit_svg(d: CircuitDrawing) -> str:
    at, width, height = _boxes(d)
    kept = [e for e in d.edges if e.kept]
    peak = max((e.drop for e in kept if e.drop is not None and not e.redundant), default=0.0)
    redundant = [e.name for e in kept if e.redundant]
    caption = f"{len(kept)} of {len(d.edges)} edges kept (solid); removed edges faint; edges run upward"
    if any(e.drop is not None for e in kept):
        caption = f"edge colour: drop (darkest {peak:.3g}); " + caption
    parts = [
        f'<svg width="{width}" height="{height}" role="img" aria-label="{escape(d.title)}">',
        f'<text x="{MARGIN}" y="14" font-size="11" font-weight="600" fill="{INK}">{escape(d.title)}</text>',
    ]
    parts += [_edge(e, at, peak) for e in d.edges if not e.kept]
    parts += [_edge(e, at, peak) for e in kept]
    parts += [_box(node, *at[node], node in d.heads) for row in d.rows for node in row]
    notes = [caption] + ([f"redundant: {', '.join(redundant)}"] if redundant else [])
    for i, note in enumerate(notes):
        fill = REDUNDANT if i else INK
        y = height - 22 + i * 13
        parts.append(f'<text x="{MARGIN}" y="{y}" font-size="10" fill="{fill}">{escape(note)}</text>')
    parts.append("</svg>")
    return "".join(parts)
