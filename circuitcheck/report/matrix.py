"""Renderers of a comparison document: terminal table, Markdown, and the report files.

First the verdicts that changed against the first variant, with what the variant found; then the
matrix: rows are claims; columns are variants (verdict, estimate, interval) and then each variant's
paired difference against the first one, starred where it differs (its interval excludes zero and
its size is at least the min effect).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from tabulate import tabulate

from circuitcheck.report.circuit_svg import CircuitDrawing
from circuitcheck.report.compare_html import comparison_html
from circuitcheck.report.figures import Figures
from circuitcheck.report.markdown_escape import md_code, md_text
from circuitcheck.report.render import run_id_comment, write_stamped
from circuitcheck.report.text import (
    CHANGED_HEADERS,
    cell_sentence,
    changed_rows,
    changed_title,
    difference_header,
    difference_text,
    footnotes,
    interval_text,
    num,
)


def cell_text(cell: dict[str, Any]) -> str:
    return f"{cell['mark']} {interval_text(cell)}" if cell["status"] == "run" else "n/a"


def matrix_rows(doc: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    first = doc["claims"][0]["differences"] if doc["claims"] else []
    headers = ["claim", *doc["variants"], *(difference_header(d) for d in first)]
    rows = [
        [c["id"], *(cell_text(c["cells"][v]) for v in doc["variants"]), *(difference_text(d) for d in c["differences"])]
        for c in doc["claims"]
    ]
    return headers, rows


def changed_table(doc: dict[str, Any]) -> str:
    """The verdicts that changed against the reference, each with the variant's sentence (terminal)."""
    rows = changed_rows(doc)
    if not rows:
        return changed_title(doc)
    claims = {c["id"]: c for c in doc["claims"]}
    why = [f"  {row[0]} on {row[1]}: {cell_sentence(claims[row[0]], row[1])}" for row in rows]
    return "\n".join([changed_title(doc), tabulate(rows, headers=CHANGED_HEADERS, tablefmt="simple"), *why])


def terminal_matrix(doc: dict[str, Any]) -> str:
    """The verdicts that changed first (with what each variant found), then every claim."""
    headers, rows = matrix_rows(doc)
    title = (
        f"{doc['name']}: {len(doc['claims'])} claims x {len(doc['variants'])} variants "
        f"(differences against {doc['reference']})"
    )
    return "\n".join([
        title, "", changed_table(doc), "", "All claims:",
        tabulate(rows, headers=headers, tablefmt="simple"), *footnotes(doc),
    ])


def _md_cell(text: str) -> str:
    """User text made inert (``md_text``), with ``*`` escaped too: the matrix's own star must not turn italic."""
    return md_text(text).replace("*", "\\*")


CHANGED_SECTION, MATRIX_SECTION, FOUND_SECTION = "Verdicts that changed", "All claims", "What each variant found"


def heading_anchors(headings: list[str]) -> list[str]:
    """The anchors GitHub gives these headings, in order: lower case, punctuation but '-' and '_' dropped,
    spaces as '-', and '-1', '-2', ... after a repeat."""
    seen: dict[str, int] = {}
    anchors = []
    for text in headings:
        slug = re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.append(slug if count == 0 else f"{slug}-{count}")
    return anchors


def _changed_markdown(doc: dict[str, Any]) -> list[str]:
    claims = {c["id"]: c for c in doc["claims"]}
    lines = []
    for found in doc["summary"].get("changed", []):
        claim = claims[found["claim"]]
        was, now = claim["cells"][found["against"]], claim["cells"][found["variant"]]
        lines.append(
            f"- **{_md_cell(found['claim'])}** on {md_code(found['variant'])}: {md_text(found['to_mark'])} "
            f"(was {md_text(found['from_mark'])} on {md_code(found['against'])}; estimate {num(was['estimate'])} "
            f"-> {num(now['estimate'])}, threshold {md_text(claim['threshold'])}). "
            f"{_md_cell(now.get('sentence', ''))}"
        )
    return lines or ["None: every claim that ran on two variants has the same verdict on each."]


def comparison_markdown(doc: dict[str, Any]) -> str:
    """The verdicts that changed, then the claims x variants matrix (each claim linked to what every variant
    found), then each variant's sentence per claim."""
    headers, rows = matrix_rows(doc)
    st = doc["statistics"]
    anchors = heading_anchors([CHANGED_SECTION, MATRIX_SECTION, FOUND_SECTION, *(c["id"] for c in doc["claims"])])[3:]
    for row, link in zip(rows, anchors, strict=True):
        row[0] = f"{_md_cell(row[0])} ([sentences](#{link}))"
    lines = [
        f"# circuitcheck comparison: {md_text(doc['name'])}",
        "",
        f"{md_code(doc['hypothesis_file'])} on {', '.join(md_code(v) for v in doc['variants'])}; "
        f"differences against {md_code(doc['reference'])}.",
        "",
        f"## {CHANGED_SECTION}",
        "",
        *_changed_markdown(doc),
        "",
        f"## {MATRIX_SECTION}",
        "",
        "| " + " | ".join(map(_md_cell, headers)) + " |",
        "|" + "---|" * len(headers),
        *("| " + " | ".join([row[0], *map(_md_cell, row[1:])]) + " |" for row in rows),
        "",
        *(f"- {_md_cell(line)}" for line in footnotes(doc)),
        "",
        f"Differences: {md_text(st['method'])}; {st['resamples']} resamples, seed {st['seed']}, "
        f"{st['confidence']:.0%} two-sided.",
        "",
        f"## {FOUND_SECTION}",
        "",
        "Each claim's statement, then what each variant found (the sentence of its own report). Every variant's "
        "full report (details, self-checks, provenance) is in the JSON and HTML reports.",
    ]
    for claim in doc["claims"]:
        lines += ["", f"### {md_text(claim['id'])}", "", f"> {md_text(claim.get('statement', ''))}", ""]
        lines += [f"- {md_code(v)}: {_md_cell(cell_sentence(claim, v))}" for v in doc["variants"]]
    lines.append("")
    if "run_id" in doc:
        lines += [run_id_comment(doc["run_id"]), ""]
    return "\n".join(lines)


def write_comparison(
    doc: dict[str, Any], report_dir: Path, drawings: dict[str, tuple[list[CircuitDrawing], Figures]] | None = None
) -> list[Path]:
    """``<name>.md``, ``<name>.json`` and ``<name>.html`` of a comparison document, sharing one ``run_id``;
    ``drawings``: per variant, its circuits and its claims' figures."""
    return write_stamped(doc, report_dir, comparison_markdown, lambda d: comparison_html(d, drawings or {}))
