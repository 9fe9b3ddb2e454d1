"""Renderers: terminal table, Markdown, JSON and HTML files, all from the report document."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tabulate import tabulate

from circuitcheck.report.document import headline

if TYPE_CHECKING:
    from circuitcheck.report.figures import Figures

MARK = {"pass": "PASS", "fail": "FAIL", "inconclusive": "INCONCLUSIVE"}


def _fmt(x: Any) -> str:
    return "n/a" if x is None else f"{x:.4g}" if isinstance(x, float) else str(x)


def mark(c: dict[str, Any]) -> str:
    if c.get("expect") == "refuted" and c["verdict"] != "inconclusive":
        return "REFUTED (expected)" if c["verdict"] == "fail" else "HOLDS (expected refuted)"
    if c.get("expect") == "known_failure" and c["verdict"] != "inconclusive":
        return "FAIL (known)" if c["verdict"] == "fail" else "HOLDS (known failure)"
    return MARK[c["verdict"]]


def _ci(c: dict[str, Any]) -> str:
    return f"[{_fmt(c['ci_low'])}, {_fmt(c['ci_high'])}]"


def terminal_table(doc: dict[str, Any]) -> str:
    rows = [[c["id"], c["kind"], mark(c), _fmt(c["estimate"]), _ci(c), c["threshold"], c["metric"]] for c in doc["claims"]]
    level = int(doc["statistics"]["confidence"] * 100)
    headers = ["claim", "kind", "verdict", "estimate", f"{level}% CI", "threshold", "metric"]
    table = tabulate(rows, headers=headers, tablefmt="simple")
    return f"{doc['name']}: {headline(doc['summary'])}\n{table}"


def markdown(doc: dict[str, Any]) -> str:
    s, p = doc["summary"], doc["provenance"]
    lines = [
        f"# circuitcheck report: {doc['name']}",
        "",
        f"**{headline(s)}** on model `{p['model']}`.",
        "",
        "| claim | kind | verdict | estimate | CI | threshold | metric |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {c['id']} | {c['kind']} | {mark(c)} | {_fmt(c['estimate'])} | {_ci(c)} | {c['threshold']} | {c['metric']} |"
        for c in doc["claims"]
    ]
    for c in doc["claims"]:
        lines += ["", f"## {c['id']}: {mark(c)}", "", f"> {c['statement']}", "", c["sentence"]]
        if c.get("seed_figure"):
            lines += ["", f"Seed figure: {c['seed_figure']}."]
        details = ", ".join(f"{k} = {_fmt(v)}" for k, v in c["details"].items())
        lines += ["", f"Details: {details}"]
    st = doc["statistics"]
    lines += ["", "## Statistics", "", f"Intervals: {st['method']}, {st['resamples']} resamples, seed {st['seed']}, {st['confidence']:.0%} two-sided."]
    lines += ["", "## Self-checks", ""]
    lines += [f"- {'ok' if c['passed'] else 'FAILED'}: **{c['name']}**: {c['detail']}" for c in doc["self_checks"]]
    lines += ["", "## Provenance", "", "| field | value |", "|---|---|"]
    lines += [f"| {k} | `{json.dumps(v) if isinstance(v, dict) else v}` |" for k, v in p.items()]
    lines += ["", f"Reproduce with: `{p['command']}`", ""]
    return "\n".join(lines)


def write_reports(doc: dict[str, Any], report_dir: Path, figures: Figures | None = None) -> list[Path]:
    """``<name>.md``, ``<name>.json`` and ``<name>.html``; ``figures`` (from the run) go into the HTML."""
    from circuitcheck.report.html import run_html  # html reads this module's mark()

    report_dir.mkdir(parents=True, exist_ok=True)
    json_path = report_dir / f"{doc['name']}.json"
    md_path = report_dir / f"{doc['name']}.md"
    html_path = report_dir / f"{doc['name']}.html"
    json_path.write_text(json.dumps(doc, indent=2, sort_keys=False) + "\n")
    md_path.write_text(markdown(doc))
    html_path.write_text(run_html(doc, figures))
    return [md_path, json_path, html_path]
