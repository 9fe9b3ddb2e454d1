"""The HTML comparison report: the verdicts that changed, then the claims x variants matrix with interval
bars and each cell's sentence, the paired differences (flagged where they differ: the interval excludes
zero and the size is at least the min effect), then every variant's own report."""

from __future__ import annotations

from html import escape
from typing import Any

from circuitcheck.report.circuit_svg import CircuitDrawing
from circuitcheck.report.figures import Figures
from circuitcheck.report.html import anchor, page, run_body, table
from circuitcheck.report.series_svg import series_html
from circuitcheck.report.svg import VERDICT_COLORS, interval_bar
from circuitcheck.report.text import (
    CHANGED_HEADERS,
    changed_rows,
    changed_title,
    difference_header,
    difference_text,
    footnotes,
    interval_text,
    outcome,
)

BAR_WIDTH = 220
DIFFERS = "#0969da"


def _cell(claim: dict[str, Any], variant: str) -> str:
    cell = claim["cells"][variant]
    if cell["status"] != "run":
        return f'<span class="badge na">N/A</span><br><span class="muted">{escape(cell["reason"])}</span>'
    key = outcome(cell)
    bar = interval_bar(cell["estimate"], cell["ci_low"], cell["ci_high"], claim["threshold"], VERDICT_COLORS[key],
                       BAR_WIDTH, f"{claim['id']} on {variant}")
    link = f'<a href="#{anchor(variant, "claim", claim["id"])}">{escape(cell["mark"])}</a>'
    why = f'<details class="why"><summary>what was found</summary>{escape(cell.get("sentence", ""))}</details>'
    return f'<span class="badge {key}">{link}</span> {escape(interval_text(cell))}<br>{bar}{why}'


def _difference(d: dict[str, Any]) -> str:
    text = escape(difference_text(d))
    if d["estimate"] is None:
        return f'{text}<br><span class="muted">{escape(d["basis"])}</span>'
    differs = d.get("differs", d["excludes_zero"])
    colour = DIFFERS if differs else VERDICT_COLORS["n/a"]
    bar = interval_bar(d["estimate"], d["ci_low"], d["ci_high"], "0", colour, BAR_WIDTH, "difference", unit_axis=False)
    flag = '<span class="flag">differs</span> ' if differs else ""
    if d["excludes_zero"] and not differs:
        flag = f'<span class="muted">excludes zero, below the min effect {d["min_effect"]:g}</span> '
    return f'{flag}{text}<br>{bar}<br><span class="muted">{escape(d["basis"])}</span>'


def _changed(doc: dict[str, Any]) -> str:
    """The verdicts that changed against the reference, each with the variant's sentence, linked to its card."""
    if not doc["summary"].get("changed"):
        return f"<p>{escape(changed_title(doc))} Every claim that ran on two variants has the same verdict on each.</p>"
    claims = {c["id"]: c for c in doc["claims"]}
    rows = []
    for row, found in zip(changed_rows(doc), doc["summary"]["changed"], strict=True):
        claim = claims[found["claim"]]
        now = claim["cells"][found["variant"]]
        link = f'<a href="#{anchor(found["variant"], "claim", found["claim"])}">{escape(found["claim"])}</a>'
        rows.append([
            f"<strong>{link}</strong>", f"<code>{escape(found['variant'])}</code>",
            f'<span class="badge {outcome(now)}">{escape(found["to_mark"])}</span>',
            *(escape(cell) for cell in row[3:]), escape(now.get("sentence", "")),
        ])
    return f"<p>{escape(changed_title(doc))}</p>" + table([*CHANGED_HEADERS, "what was found"], rows)


def _matrix(doc: dict[str, Any]) -> str:
    first = doc["claims"][0]["differences"] if doc["claims"] else []
    headers = ["claim", *doc["variants"], *(f"difference {difference_header(d)}" for d in first)]
    rows = [
        [
            f'<strong>{escape(c["id"])}</strong><br>'
            f'<span class="muted">{escape(c["kind"])}, threshold {escape(c["threshold"])}</span>',
            *(_cell(c, v) for v in doc["variants"]),
            *(_difference(d) for d in c["differences"]),
        ]
        for c in doc["claims"]
    ]
    return table(headers, rows)


def _statements(doc: dict[str, Any]) -> str:
    rows = [[escape(c["id"]), escape(c["statement"])] for c in doc["claims"]]
    return table(["claim", "statement"], rows)


def _variant_section(
    variant: str, run: dict[str, Any] | None, drawings: tuple[list[CircuitDrawing], Figures] | None
) -> str:
    if run is None:
        return f"<h3>{escape(variant)}</h3><p>Nothing ran on this variant: every claim is not applicable.</p>"
    s = run["summary"]
    summary = f"{escape(variant)}: {s['passed']} of {s['total']} applicable claims passed"
    circuits, figures = drawings or ([], {})
    body = run_body(run, figures, variant, circuits=circuits)
    return f'<details open id="{anchor(variant)}"><summary>{summary}</summary>{body}</details>'


def comparison_html(doc: dict[str, Any], drawings: dict[str, tuple[list[CircuitDrawing], Figures]]) -> str:
    st = doc["statistics"]
    variants = ", ".join(f"<code>{escape(v)}</code>" for v in doc["variants"])
    notes = "".join(f"<li>{escape(line)}</li>" for line in footnotes(doc))
    body = [
        f"<h1>circuitcheck comparison: {escape(doc['name'])}</h1>",
        f"<p><code>{escape(doc['hypothesis_file'])}</code> on {variants}. Differences are against "
        f"<code>{escape(doc['reference'])}</code>: {escape(st['method'])}, {st['resamples']} resamples, "
        f"seed {st['seed']}, {st['confidence']:.0%} two-sided.</p>",
        "<h2>Verdicts that changed</h2>", _changed(doc),
        "<h2>Claims x variants</h2>", _matrix(doc), f"<ul>{notes}</ul>",
        *(["<h2>Series</h2>", series_html(doc["series"])] if doc.get("series") else []),
        "<h2>Statements</h2>", _statements(doc),
        "<h2>Variants</h2>",
        *(_variant_section(v, doc["runs"].get(v), drawings.get(v)) for v in doc["variants"]),
    ]
    return page(f"circuitcheck: {doc['name']}", "\n".join(body))
