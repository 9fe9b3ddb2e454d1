"""Renderers: terminal table, Markdown, JSON and HTML files, all from the report document."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from tabulate import tabulate

from circuitcheck.atomic import exclusive_lock, write_atomic
from circuitcheck.errors import CircuitcheckError
from circuitcheck.report.circuit_svg import CircuitDrawing
from circuitcheck.report.figures import Figures
from circuitcheck.report.html import run_html
from circuitcheck.report.markdown_escape import md_code, md_text
from circuitcheck.report.text import headline, mark, measures, null_detail, null_text, num, warning_lines

UNSAFE_IN_NAMES = ("/", "\\", "\0")
"""Characters a report name may not hold: path separators (either OS's) and NUL."""

def _ci(c: dict[str, Any]) -> str:
    return f"[{num(c['ci_low'])}, {num(c['ci_high'])}]"


def _with_nulls(doc: dict[str, Any]) -> bool:
    """The null-model control ran: the tables get a "null model" column."""
    return any(c.get("null_control") for c in doc["claims"])


def terminal_table(doc: dict[str, Any]) -> str:
    rows = [
        [c["id"], c["kind"], mark(c), num(c["estimate"]), _ci(c), c["threshold"], measures(c)] for c in doc["claims"]
    ]
    level = int(doc["statistics"]["confidence"] * 100)
    headers = ["claim", "kind", "verdict", "estimate", f"{level}% CI", "threshold", "metric"]
    if _with_nulls(doc):
        headers.append("null model")
        rows = [row + [null_text(c)] for row, c in zip(rows, doc["claims"], strict=True)]
    table = tabulate(rows, headers=headers, tablefmt="simple")
    warnings = [line for c in doc["claims"] for line in warning_lines(c)]
    return f"{doc['name']}: {headline(doc['summary'])}\n{table}" + "".join(f"\n{w}" for w in warnings)


def markdown(doc: dict[str, Any]) -> str:
    s, p = doc["summary"], doc["provenance"]
    lines = [
        f"# circuitcheck report: {md_text(doc['name'])}",
        "",
        f"**{headline(s)}** on model {md_code(p['model'])}.",
        "",
    ]
    nulls = _with_nulls(doc)
    lines += [
        "| claim | kind | verdict | estimate | CI | threshold | metric |" + (" null model |" if nulls else ""),
        "|---|---|---|---|---|---|---|" + ("---|" if nulls else ""),
    ]
    lines += [
        f"| {md_text(c['id'])} | {md_text(c['kind'])} | {mark(c)} | {num(c['estimate'])} | {_ci(c)} "
        f"| {md_text(c['threshold'])} | {md_text(measures(c))} |" + (f" {md_text(null_text(c))} |" if nulls else "")
        for c in doc["claims"]
    ]
    for c in doc["claims"]:
        lines += [
            "",
            f"## {md_text(c['id'])}: {mark(c)}",
            "",
            f"> {md_text(c['statement'])}",
            "",
            md_text(c["sentence"]),
        ]
        if c.get("seed_figure"):
            lines += ["", f"Seed figure: {md_text(c['seed_figure'])}."]
        if c.get("null_control"):
            lines += ["", md_text(null_detail(c))]
        for w in c.get("warnings", []):
            lines += ["", f"**Warning** ({md_text(w['rule'])}, {md_code(w['where'])}): {md_text(w['message'])}. "
                          f"Fix: {md_text(w['fix'])}."]
        details = ", ".join(f"{k} = {num(v)}" for k, v in c["details"].items())
        lines += ["", f"Details: {md_text(details)}"]
        lines += edge_table(c)
    st = doc["statistics"]
    lines += [
        "",
        "## Statistics",
        "",
        f"Intervals: {md_text(st['method'])}, {st['resamples']} resamples, seed {st['seed']}, "
        f"{st['confidence']:.0%} two-sided.",
    ]
    lines += ["", "## Self-checks", ""]
    lines += [
        f"- {'ok' if c['passed'] else 'FAILED'}: **{md_text(c['name'])}**: {md_text(c['detail'])}"
        for c in doc["self_checks"]
    ]
    lines += ["", "## Provenance", "", "| field | value |", "|---|---|"]
    lines += [
        f"| {md_text(k)} | {md_code(json.dumps(v) if isinstance(v, dict) else v, in_table=True)} |"
        for k, v in p.items()
    ]
    lines += ["", f"Reproduce with: {md_code(p['command'])}", ""]
    if "run_id" in doc:
        lines += [run_id_comment(doc["run_id"]), ""]
    return "\n".join(lines)


def edge_table(c: dict[str, Any]) -> list[str]:
    """A minimality claim's edges with their drop, interval, Holm p-value and verdict; nothing for other claims."""
    edges = c["details"].get("edges")
    if c["kind"] != "minimality" or not isinstance(edges, list):
        return []
    lines = ["", "| edge | drop | 95% interval | p (Holm) | edge verdict |", "|---|---|---|---|---|"]
    lines += [
        f"| {md_text(e.get('edge'))} | {num(e.get('drop'))} | [{num(e.get('ci_low'))}, {num(e.get('ci_high'))}] "
        f"| {num(e.get('p_holm'))} | {'necessary' if e.get('necessary') else 'redundant'} |"
        for e in edges if isinstance(e, dict)
    ]
    return lines


REPORT_SUFFIXES = ("md", "html", "json")
"""In write order: JSON last, so a JSON carrying a run id means that run's Markdown and HTML are in place."""


def new_run_id() -> str:
    return uuid.uuid4().hex


def run_id_comment(run_id: str) -> str:
    """The Markdown trailer line that names the run (invisible when rendered)."""
    return f"<!-- circuitcheck-run-id: {run_id} -->"


def stamp_html(html: str, run_id: str) -> str:
    """Add ``<meta name="circuitcheck-run-id">`` at the end of the page's ``<head>`` (after the charset)."""
    before, end, after = html.partition("</head>")
    if not end:
        raise ValueError("an HTML report without </head>: nowhere to put its run id")
    return f'{before}<meta name="circuitcheck-run-id" content="{run_id}">{end}{after}'


def report_paths(report_dir: Path, stem: str, suffixes: Iterable[str]) -> list[Path]:
    """``<report_dir>/<stem>.<suffix>`` for each suffix, refusing any that would land outside ``report_dir``.

    The spec loader already checks ``name:``; this is the last line of defence, at the write itself.
    """
    if not stem or stem.startswith(".") or any(ch in stem for ch in UNSAFE_IN_NAMES):
        raise CircuitcheckError(
            f"report name {stem!r} is not a plain file name: it must be non-empty, contain no path separator "
            "or NUL, and not start with '.'; change the hypothesis file's 'name:'"
        )
    folder = report_dir.resolve()
    paths = [report_dir / f"{stem}.{suffix}" for suffix in suffixes]
    for path in paths:
        if path.resolve().parent != folder:
            raise CircuitcheckError(
                f"{path}: resolves to {path.resolve()}, outside the report folder {folder}; "
                "remove the link there or pass another --report-dir"
            )
    return paths


def write_report_set(report_dir: Path, stem: str, texts: dict[str, str]) -> dict[str, Path]:
    """Write ``texts`` (suffix -> text) as ``<stem>.<suffix>``: each file atomically, in ``REPORT_SUFFIXES``
    order, all under one lock so that concurrent runs leave the set of one run, never a mix."""
    suffixes = sorted(texts, key=REPORT_SUFFIXES.index)  # an unknown suffix is a ValueError here
    paths = dict(zip(suffixes, report_paths(report_dir, stem, suffixes), strict=True))
    report_dir.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(report_dir / f".{stem}.lock"):
        for suffix, path in paths.items():
            write_atomic(path, texts[suffix])
    return paths


def write_stamped(
    doc: dict[str, Any], report_dir: Path, markdown_of: Callable[[dict[str, Any]], str],
    html_of: Callable[[dict[str, Any]], str],
) -> list[Path]:
    """Give ``doc`` (left unchanged) a new ``run_id``, render it, and write ``<name>.{md,html,json}`` with
    ``write_report_set``; returns the paths as md, json, html."""
    run_id = new_run_id()
    stamped = doc | {"run_id": run_id}
    paths = write_report_set(report_dir, doc["name"], {
        "md": markdown_of(stamped),
        "html": stamp_html(html_of(stamped), run_id),
        "json": json.dumps(stamped, indent=2) + "\n",
    })
    return [paths["md"], paths["json"], paths["html"]]


def write_reports(
    doc: dict[str, Any], report_dir: Path, figures: Figures | None = None, circuits: list[CircuitDrawing] | None = None
) -> list[Path]:
    """``<name>.md``, ``<name>.json`` and ``<name>.html`` of one run, sharing one ``run_id``; ``figures``
    and ``circuits`` (from the run) go into the HTML."""
    return write_stamped(doc, report_dir, markdown, lambda d: run_html(d, figures, circuits))
