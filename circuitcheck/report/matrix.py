"""Renderers of a comparison document: terminal table, Markdown, and the report files.

Rows are claims; columns are variants (verdict, estimate, interval) and then each
variant's paired difference against the first one, starred where its interval excludes zero.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tabulate import tabulate

from circuitcheck.report.figures import Figures
from circuitcheck.report.markdown_escape import md_code, md_text
from circuitcheck.report.render import run_id_comment, write_stamped

STAR = "*"


def _f(x: Any) -> str:
    return "n/a" if x is None else f"{x:.4g}" if isinstance(x, float) else str(x)


def interval_text(cell: dict[str, Any]) -> str:
    return f"{_f(cell['estimate'])} [{_f(cell['ci_low'])}, {_f(cell['ci_high'])}]"


def cell_text(cell: dict[str, Any]) -> str:
    return f"{cell['mark']} {interval_text(cell)}" if cell["status"] == "run" else "n/a"


def difference_text(d: dict[str, Any]) -> str:
    if d["estimate"] is None:
        return "n/a"
    if d["ci_low"] is None:
        return f"{d['estimate']:+.4g} (no interval)"
    flag = f" {STAR}" if d["excludes_zero"] else ""
    if d["basis"] == "exact":
        return f"{d['estimate']:+.4g} (exact){flag}"
    if d["basis"] == "unpaired bootstrap":
        flag = " unpaired" + flag
    return f"{d['estimate']:+.4g} [{d['ci_low']:+.4g}, {d['ci_high']:+.4g}]{flag}"


def difference_header(d: dict[str, Any]) -> str:
    return f"{d['variant']} - {d['against']}"


def matrix_rows(doc: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    first = doc["claims"][0]["differences"] if doc["claims"] else []
    headers = ["claim", *doc["variants"], *(difference_header(d) for d in first)]
    rows = [
        [c["id"], *(cell_text(c["cells"][v]) for v in doc["variants"]), *(difference_text(d) for d in c["differences"])]
        for c in doc["claims"]
    ]
    return headers, rows


def footnotes(doc: dict[str, Any]) -> list[str]:
    """What the stars mean, the claims that differ, and why the n/a cells are n/a."""
    level = int(doc["statistics"]["confidence"] * 100)
    differing = ", ".join(f"{d['claim']} ({d['variant']})" for d in doc["summary"]["differing"]) or "none"
    lines = [
        f"{STAR} the {level}% interval of the difference excludes zero (paired on the same sequences; marked unpaired "
        f"where the variants' datasets differ; marked exact for weight-based claims: the difference is not zero). "
        f"Differ: {differing}."
    ]
    for c in doc["claims"]:
        for variant, cell in c["cells"].items():
            if cell["status"] != "run":
                lines.append(f"{c['id']} on {variant}: not applicable: {cell['reason']}")
    return lines


def terminal_matrix(doc: dict[str, Any]) -> str:
    headers, rows = matrix_rows(doc)
    title = f"{doc['name']}: {len(doc['claims'])} claims x {len(doc['variants'])} variants (differences against {doc['reference']})"
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
        f"Differences: {md_text(st['method'])}; {st['resamples']} resamples, seed {st['seed']}, {st['confidence']:.0%} two-sided.",
        "",
        "Each variant's own report (statements, sentences, self-checks, provenance) is in the JSON and HTML reports.",
        "",
    ]
    if "run_id" in doc:
        lines += [run_id_comment(doc["run_id"]), ""]
    return "\n".join(lines)


def write_comparison(doc: dict[str, Any], report_dir: Path, figures: dict[str, Figures] | None = None) -> list[Path]:
    """``<name>.md``, ``<name>.json`` and ``<name>.html`` of a comparison document, sharing one ``run_id``."""
    from circuitcheck.report.compare_html import comparison_html  # compare_html reads this module's texts

    return write_stamped(doc, report_dir, comparison_markdown, lambda d: comparison_html(d, figures or {}))
