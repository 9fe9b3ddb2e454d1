"""The HTML report: one self-contained file (inline CSS and SVG, no scripts, no network).

Built from the same report document as the JSON and Markdown, plus optional figures
(attention heatmaps) that only a run's captured activations can supply. Every piece
of text from the document is escaped.
"""

from __future__ import annotations

import json
import re
from html import escape
from typing import Any

from circuitcheck.report.circuit_svg import CircuitDrawing, circuit_svg
from circuitcheck.report.figures import Figure, Figures
from circuitcheck.report.svg import VERDICT_COLORS, bar_chart, heatmap, interval_bar
from circuitcheck.report.text import headline, mark, measures, null_detail, null_text, outcome

# A backslash at the end of a line continues the rule on the next: the string holds no newline there.
CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;color:#24292f;\
margin:0;background:#f6f8fa}
main{max-width:1100px;margin:0 auto;padding:24px}
h1{margin:0 0 4px}h2{margin-top:32px;border-bottom:1px solid #d0d7de;padding-bottom:4px}
table{border-collapse:collapse;margin:8px 0;background:white}
th,td{border:1px solid #d0d7de;padding:4px 8px;text-align:left;vertical-align:top;font-size:14px}
th{background:#f6f8fa}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.badge{display:inline-block;padding:2px 8px;border-radius:12px;color:white;font-weight:600;font-size:13px}
.pass{background:#1a7f37}.fail{background:#cf222e}.inconclusive{background:#9a6700}.na{background:#6e7781}
.card{background:white;border:1px solid #d0d7de;border-left:8px solid #6e7781;border-radius:6px;\
padding:12px 16px;margin:16px 0}
.card.v-pass{border-left-color:#1a7f37}.card.v-fail{border-left-color:#cf222e}.card.v-inconclusive{border-left-color:#9a6700}
.card h3{margin:0 0 8px}.kind{color:#57606a;font-weight:400;font-size:14px}
blockquote{margin:8px 0;padding:4px 12px;border-left:3px solid #d0d7de;color:#424a53}
.figs{display:flex;flex-wrap:wrap;gap:16px;align-items:flex-start}
.muted{color:#57606a;font-size:13px}
.warning{background:#fff8c5;border-left:3px solid #d4a72c;padding:4px 8px}
.flag{color:#0969da;font-weight:700}
code{font-size:13px;word-break:break-all}
.badge a{color:white;text-decoration:none}
details summary{cursor:pointer;font-weight:600;margin:8px 0}
details.why{font-size:13px;max-width:360px}details.why summary{font-weight:400;color:#0969da;margin:2px 0}
"""

_NOT_ID = re.compile(r"[^A-Za-z0-9_-]+")


def anchor(*parts: str) -> str:
    return "-".join(_NOT_ID.sub("_", p) for p in parts)


def fmt(x: Any) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, float):
        return f"{x:.4g}"
    if isinstance(x, (dict, list)):
        return json.dumps(x)
    return str(x)


def badge(claim: dict[str, Any]) -> str:
    return f'<span class="badge {outcome(claim)}">{escape(mark(claim))}</span>'


def ci_text(claim: dict[str, Any]) -> str:
    return f"{fmt(claim['estimate'])} [{fmt(claim['ci_low'])}, {fmt(claim['ci_high'])}]"


def page(title: str, body: str) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{CSS}</style></head>\n<body><main>\n{body}\n</main></body></html>\n"
    )


def table(headers: list[str], rows: list[list[str]]) -> str:
    """An HTML table; ``headers`` are escaped here, cells must already be HTML."""
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _details_table(details: dict[str, Any]) -> str:
    rows = [[f"<code>{escape(str(k))}</code>", escape(fmt(v))] for k, v in details.items()]
    return table(["detail", "value"], rows) if rows else ""


def _ladder(claim: dict[str, Any]) -> str:
    """A bar chart of the rung estimates an ordering claim combines."""
    rungs = claim["details"].get("estimates")
    if not isinstance(rungs, dict) or not rungs:
        return ""
    bars = [(str(k), v if isinstance(v, (int, float)) else None) for k, v in rungs.items()]
    return bar_chart(bars, f"{claim['id']}: rung estimates in the declared order", VERDICT_COLORS[outcome(claim)])


def figure_svg(figure: Figure) -> str:
    return circuit_svg(figure) if isinstance(figure, CircuitDrawing) else heatmap(figure)


def claim_card(claim: dict[str, Any], confidence: float, figures: list[Figure], prefix: str = "") -> str:
    color = VERDICT_COLORS[outcome(claim)]
    bar = interval_bar(claim["estimate"], claim["ci_low"], claim["ci_high"], claim["threshold"], color,
                       label=f"{claim['id']} estimate and interval")
    parts = [
        f'<section class="card v-{outcome(claim)}" id="{anchor(prefix, "claim", claim["id"])}">',
        f'<h3>{escape(claim["id"])} {badge(claim)} <span class="kind">{escape(claim["kind"])}</span></h3>',
        f"<blockquote>{escape(claim['statement'])}</blockquote>",
        f'<div>{bar}</div><p class="muted">estimate {escape(ci_text(claim))} ({int(confidence * 100)}% CI), '
        f"threshold {escape(claim['threshold'])}, metric {escape(measures(claim) or 'n/a')}</p>",
        f"<p>{escape(claim['sentence'])}</p>",
    ]
    if claim.get("seed_figure"):
        parts.append(f'<p class="muted">Seed figure: {escape(claim["seed_figure"])}</p>')
    if claim.get("null_control"):
        parts.append(f'<p class="null">{escape(null_detail(claim))}</p>')
    parts += [
        f'<p class="warning"><strong>Warning</strong> ({escape(w["rule"])}, {escape(w["where"])}): '
        f"{escape(w['message'])}. Fix: {escape(w['fix'])}.</p>"
        for w in claim.get("warnings", [])
    ]
    ladder = _ladder(claim)
    if ladder or figures:
        parts.append(f'<div class="figs">{ladder}{"".join(figure_svg(f) for f in figures)}</div>')
    parts.append(_details_table(claim["details"]))
    parts.append("</section>")
    return "\n".join(parts)


def summary_table(claims: list[dict[str, Any]], confidence: float, prefix: str = "") -> str:
    nulls = any(c.get("null_control") for c in claims)
    rows = [
        [f'<a href="#{anchor(prefix, "claim", c["id"])}">{escape(c["id"])}</a>', escape(c["kind"]), badge(c),
         escape(ci_text(c)), escape(c["threshold"]), escape(measures(c))] + ([escape(null_text(c))] if nulls else [])
        for c in claims
    ]
    headers = ["claim", "kind", "verdict", f"estimate [{int(confidence * 100)}% CI]", "threshold", "metric"]
    return table(headers + (["null model"] if nulls else []), rows)


def checks_and_provenance(doc: dict[str, Any], on: str = "") -> str:
    """Statistics, self-checks and provenance sections of one run document (``on``: a heading suffix)."""
    st = doc["statistics"]
    checks = [
        [f'<span class="badge {"pass" if c["passed"] else "fail"}">{"ok" if c["passed"] else "FAILED"}</span>',
         escape(c["name"]), escape(c["detail"])]
        for c in doc["self_checks"]
    ]
    prov = [[f"<code>{escape(k)}</code>", f"<code>{escape(fmt(v))}</code>"] for k, v in doc["provenance"].items()]
    return "\n".join([
        f"<h2>Statistics{on}</h2>",
        f"<p>Intervals: {escape(st['method'])}, {st['resamples']} resamples, seed {st['seed']}, "
        f"{st['confidence']:.0%} two-sided.</p>",
        f"<h2>Self-checks{on}</h2>", table(["", "check", "detail"], checks),
        f"<h2>Provenance{on}</h2>", table(["field", "value"], prov),
        f"<p>Reproduce with: <code>{escape(doc['provenance'].get('command', ''))}</code></p>",
    ])


def circuits_section(circuits: list[CircuitDrawing], on: str = "") -> list[str]:
    """The file's circuits as graphs; nothing for a file without circuits."""
    if not circuits:
        return []
    return [f"<h2>Circuits{on}</h2>", f'<div class="figs">{"".join(circuit_svg(c) for c in circuits)}</div>']


def run_body(
    doc: dict[str, Any], figures: Figures, prefix: str = "", circuits: list[CircuitDrawing] | None = None
) -> str:
    """Summary table, the file's circuits (if any), one card per claim, then statistics, self-checks and provenance."""
    confidence = doc["statistics"]["confidence"]
    cards = [claim_card(c, confidence, figures.get(c["id"], []), prefix) for c in doc["claims"]]
    on = f" on {escape(prefix)}" if prefix else ""
    return "\n".join(
        [
            summary_table(doc["claims"], confidence, prefix),
            *circuits_section(circuits or [], on),
            f"<h2>Claims{on}</h2>",
            *cards,
            checks_and_provenance(doc, on),
        ]
    )


def run_html(doc: dict[str, Any], figures: Figures | None = None, circuits: list[CircuitDrawing] | None = None) -> str:
    head = (
        f"<h1>circuitcheck report: {escape(doc['name'])}</h1>"
        f"<p><strong>{escape(headline(doc['summary']))}</strong> on model "
        f"<code>{escape(str(doc['provenance']['model']))}</code>.</p>"
    )
    return page(f"circuitcheck: {doc['name']}", head + "\n" + run_body(doc, figures or {}, circuits=circuits))
