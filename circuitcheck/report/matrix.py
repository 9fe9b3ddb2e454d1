"""Renderers of a comparison document: terminal table, Markdown, and the report files.

Rows are claims; columns are variants (verdict, estimate, interval) and then each
variant's paired difference against the first one, starred where its interval excludes zero.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tabulate import tabulate

from circuitcheck.report.compare_html import comparison_html
from circuitcheck.report.figures import Figures
from circuitcheck.report.markdown_escape import md_code, md_text
from circuitcheck.report.render import run_id_comment, write_stamped
from circuitcheck.report.text import difference_header, difference_text, footnotes, interval_text


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


def terminal_matrix(doc: dict[str, Any]) -> str:
    headers, rows = matrix_rows(doc)
    title = (
        f"{doc['name']}: {len(doc['claims'])} claims x {len(doc['variants'])} variants "
        f"(differences against {doc['reference']})"
    )
    return "\n".join([title, tabulate(rows, headers=headers, tablefmt="simple"), *footnotes(doc)])


def _md_cell(text: str) -> str:
    """User text made inert (``md_text``), with ``*`` escaped too: the matrix's own star must not turn italic."""
    return md_text(text).replace("*", "\\*")


def comparison_markdown(doc: dict[str, Any]) -> str:
    headers, rows = matrix_rows(doc)
    st = doc["statistics"]
    lines = [
        f"# circuitcheck comparison: {md_text(doc['name'])}",
        "",
        f"{md_code(doc['hypothesis_file'])} on {', '.join(md_code(v) for v in doc['variants'])}; "
        f"differences against {md_code(doc['reference'])}.",
        "",
        "| " + " | ".join(map(_md_cell, headers)) + " |",
        "|" + "---|" * len(headers),
        *("| " + " | ".join(map(_md_cell, row)) + " |" for row in rows),
        "",
        *(f"- {_md_cell(line)}" for line in footnotes(doc)),
        "",
        f"Differences: {md_text(st['method'])}; {st['resamples']} resamples, seed {st['seed']}, "
        f"{st['confidence']:.0%} two-sided.",
        "",
        "Each variant's own report (statements, sentences, self-checks, provenance) is in the JSON and HTML reports.",
        "",
    ]
    if "run_id" in doc:
        lines += [run_id_comment(doc["run_id"]), ""]
    return "\n".join(lines)


def write_comparison(doc: dict[str, Any], report_dir: Path, figures: dict[str, Figures] | None = None) -> list[Path]:
    """``<name>.md``, ``<name>.json`` and ``<name>.html`` of a comparison document, sharing one ``run_id``."""
    return write_stamped(doc, report_dir, comparison_markdown, lambda d: comparison_html(d, figures or {}))
