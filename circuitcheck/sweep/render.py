"""A sweep's HTML page: per-layer heatmaps of the fraction recovered, inline SVG, self-contained.

Heads: one heatmap per layer, a row per head and a column per position. Residual stream and MLP: one
heatmap, a row per layer. Each cell's ``<title>`` (the browser's tooltip) holds its estimate and interval.
Colour: white at 0, blue towards +1 (recovers the clean metric), red towards -1 (makes it worse); values
beyond +-1 are drawn as +-1 and their tooltip says the value.
"""

from __future__ import annotations

import json
import math
from html import escape
from typing import Any

from circuitcheck.report.html import fmt, page, table

INK, FAINT, BLUE, RED = "#24292f", "#d0d7de", (8, 48, 107), (165, 15, 21)
CELL = 16


def colour(v: float | None) -> str:
    if v is None or not math.isfinite(v):
        return "#eeeeee"
    t = min(abs(v), 1.0)
    r, g, b = (round(255 + (c - 255) * t) for c in (BLUE if v >= 0 else RED))
    return f"#{r:02x}{g:02x}{b:02x}"


def _text(x: float, y: float, content: str, anchor: str = "middle", size: int = 10, bold: bool = False) -> str:
    weight = ' font-weight="600"' if bold else ""
    return (f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" fill="{INK}"{weight}>'
            f"{escape(content)}</text>")


def grid_svg(title: str, rows: list[str], cells: list[list[dict[str, Any]]], confidence: float) -> str:
    """A heatmap: ``cells[row][position]`` holds ``estimate``, ``lo``, ``hi`` (None when undefined)."""
    n_pos = len(cells[0]) if cells else 0
    left, top = 14 + 7 * max((len(r) for r in rows), default=1), 26
    width = max(left + n_pos * CELL + 20, 7 * len(title) + left)
    height = top + len(rows) * CELL + 34
    parts = [f'<svg width="{width}" height="{height}" role="img" aria-label="{escape(title)}">',
             _text(left, 14, title, "start", 11, bold=True)]
    level = f"{round(confidence * 100)}% CI"
    for r, (label, row) in enumerate(zip(rows, cells, strict=True)):
        y = top + r * CELL
        parts.append(_text(left - 4, y + CELL * 0.7, label, "end"))
        for p, cell in enumerate(row):
            est, lo, hi = cell["estimate"], cell["lo"], cell["hi"]
            tip = (f"{label}, position {p}: " + ("undefined" if est is None else f"{est:.4g}")
                   + ("" if lo is None else f" [{level} {lo:.4g}, {hi:.4g}]"))
            parts.append(f'<rect x="{left + p * CELL}" y="{y}" width="{CELL}" height="{CELL}" fill="{colour(est)}" '
                         f'stroke="white"><title>{escape(tip)}</title></rect>')
    parts.append(f'<rect x="{left}" y="{top}" width="{n_pos * CELL}" height="{len(rows) * CELL}" fill="none" '
                 f'stroke="{FAINT}"/>')
    base = top + len(rows) * CELL
    step = 1 if n_pos <= 20 else 5
    for p in range(0, n_pos, step):
        parts.append(_text(left + p * CELL + CELL / 2, base + 11, str(p), size=9))
    parts.append(_text(left + n_pos * CELL / 2, base + 26, "position patched", size=10))
    parts.append("</svg>")
    return "".join(parts)


def legend_svg() -> str:
    parts = ['<svg width="260" height="34" role="img" aria-label="colour scale">']
    for i in range(21):
        v = -1 + i * 0.1
        parts.append(f'<rect x="{10 + i * 11}" y="4" width="11" height="12" fill="{colour(v)}"/>')
    parts.append(_text(10, 28, "-1 (worse)", "start", 9) + _text(125, 28, "0", size=9)
                 + _text(241, 28, "+1 (all recovered)", "end", 9))
    parts.append("</svg>")
    return "".join(parts)


def _grids(doc: dict[str, Any]) -> list[str]:
    by_row: dict[tuple[int, int | None], list[dict[str, Any]]] = {}
    for cell in doc["cells"]:
        by_row.setdefault((cell["layer"], cell["head"]), []).append(cell)
    confidence = doc["statistics"]["confidence"]
    if doc["over"] == "heads":
        out = []
        for layer in range(doc["n_layers"]):
            keys = sorted(k for k in by_row if k[0] == layer)
            out.append(grid_svg(f"layer {layer}: heads x positions", [f"{layer}.{h}" for _, h in keys],
                                [by_row[k] for k in keys], confidence))
        return out
    keys = sorted(by_row)
    what = "hook_resid_pre" if doc["over"] == "resid" else "hook_mlp_out"
    return [grid_svg(f"{what}: layers x positions", [f"L{k[0]}" for k in keys], [by_row[k] for k in keys],
                     confidence)]


def sweep_html(doc: dict[str, Any]) -> str:
    level = f"{round(doc['statistics']['confidence'] * 100)}% CI"
    top = table(["rank", "component", "position", "fraction recovered", level],
                [[str(i + 1), escape(c["component"]), str(c["position"]), fmt(c["estimate"]),
                  f"[{fmt(c['lo'])}, {fmt(c['hi'])}]"] for i, c in enumerate(doc["top"])])
    prov = doc["provenance"]
    body = [
        f"<h1>Patching sweep over {escape(doc['over'])}: {escape(doc['name'])}</h1>",
        f"<p>Model <code>{escape(str(prov['model']))}</code> (sha256 {escape(str(prov['checkpoint_sha256'])[:12])}); "
        f"{doc['n_seqs']} sequences x {doc['seq_len']} positions; corruption {escape(doc['corruption_source'])}: "
        f"<code>{escape(json.dumps(doc['corruption']))}</code>.</p>",
        f"<p>Each cell: the clean activation of one site at one position, patched into the corrupted run. "
        f"Fraction recovered of <code>{escape(doc['metric'])}</code> at <code>{escape(doc['positions'])}</code> "
        f"({doc['n_scored']} scored positions): (M_patched - M_corrupted) / (M_clean - M_corrupted), with "
        f"M_clean = {fmt(doc['metric_clean'])} and M_corrupted = {fmt(doc['metric_corrupted'])}. Intervals: "
        f"{doc['statistics']['bootstrap']} bootstrap resamples of sequences (seed {doc['statistics']['seed']}). "
        "Hover a cell for its estimate and interval.</p>",
        legend_svg(),
        *(f"<figure>{g}</figure>" for g in _grids(doc)),
        f"<h2>Top cells</h2>{top}",
        f"<p>Draft hypothesis file: <code>{escape(str(doc.get('draft') or 'none'))}</code> (discovery, not "
        "confirmation: run it to test these cells on fresh data).</p>",
        "<h2>Provenance</h2>" + table(["key", "value"], [[escape(k), escape(str(v))] for k, v in prov.items()]),
    ]
    return page(f"{doc['name']} sweep over {doc['over']}", "\n".join(body))
