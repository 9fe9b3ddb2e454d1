"""Issue 17's smaller items: the metric column says what the estimate is, help texts name every output,
the documented schemas (docs/reports.md) list every key the reports write, and the pytest plugin shows numbers
as reports do."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from circuitcheck.cli import build_parser
from circuitcheck.plugins import load_extensions
from circuitcheck.report.render import markdown, terminal_table
from circuitcheck.report.text import measures
from circuitcheck.spec.kinds import claim_kinds
from circuitcheck.verdict.summary import Summary
from tests.conftest import REPO, VALID_FILE

REPORTS_DOC = (REPO / "docs" / "reports.md").read_text()
COMPARE_DOC = (REPO / "docs" / "compare.md").read_text()
FORMAT_DOC = (REPO / "docs" / "file-format.md").read_text()

COMMON = {"id": "c", "statement": "s", "threshold": {"at_least": 0.5}}


@pytest.mark.parametrize(
    ("kind", "fields", "want"),
    [
        ("ablation", {"mode": "necessity", "components": ["0.0"], "method": "zero", "positions": "Y",
                      "metric": "correct_prob", "effect": "relative_drop"}, "correct_prob, relative drop"),
        ("ablation", {"mode": "necessity", "components": ["0.0"], "method": "zero", "positions": "Y",
                      "metric": "loss", "effect": "absolute_drop"}, "loss, absolute drop"),
        ("preservation", {"circuit": "c", "ablation": "zero", "positions": "Y", "metric": "accuracy",
                          "estimate": "ratio", "threshold": {"within": 0.1}}, "accuracy, ratio"),
        ("replacement", {"replace": [], "positions": "Y", "metric": "accuracy"}, "accuracy"),
        ("ov_copying", {"head": "0.0"}, ""),
    ],
)
def test_the_metric_column_says_what_the_estimate_is(kind, fields, want):
    load_extensions()
    spec = claim_kinds.get(kind).model_validate(COMMON | {"kind": kind} | fields)
    assert spec.measures == want


def _doc(measured: str | None) -> dict:
    claim = {"id": "T8", "kind": "ablation", "verdict": "pass", "estimate": 0.7, "ci_low": 0.6, "ci_high": 0.8,
             "threshold": ">= 0.5", "metric": "correct_prob", "sentence": "s", "statement": "st", "details": {},
             "expect": "holds", "as_expected": True}
    if measured is not None:
        claim["measures"] = measured
    return {"name": "n", "summary": Summary.of([]).as_dict() | {"total": 1, "passed": 1}, "claims": [claim],
            "statistics": {"confidence": 0.95, "method": "m", "resamples": 10, "seed": 0}, "self_checks": [],
            "provenance": {"model": "m", "command": "c"}}


def test_tables_show_the_drop_next_to_its_metric_and_read_older_reports():
    assert "correct_prob, relative drop" in terminal_table(_doc("correct_prob, relative drop"))
    assert "| &gt;= 0.5 | correct_prob, relative drop |" in markdown(_doc("correct_prob, relative drop"))
    assert measures(_doc(None)["claims"][0]) == "correct_prob"  # a report written before 'measures'


def _help(command: str) -> str:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert isinstance(sub.choices, dict)
    return str(sub.choices[command].format_help())


def test_run_help_names_the_html_report():
    assert re.search(r"<name>\.md,\s+<name>\.json\s+and\s+<name>\.html", _help("run"))
    assert re.search(r"<name>\.html", _help("baseline"))
    assert "--min-effect" in _help("compare")


def test_the_documented_schema_lists_every_summary_key():
    schema_line = next(line for line in REPORTS_DOC.splitlines() if line.startswith("summary: {"))
    for key in Summary.of([]).as_dict():
        assert key in schema_line, key


def test_the_docs_document_the_comparison_keys_issue_17_added():
    for key in ("changed", "min_effect", "sentence", "large_enough", "differs", "--min-effect"):
        assert key in COMPARE_DOC, key
    assert "measures: str" in REPORTS_DOC and "{between: [low, high]}" in FORMAT_DOC


def test_the_pytest_plugin_shows_four_significant_digits(tmp_path):
    path = tmp_path / "h.yaml"
    path.write_text(VALID_FILE.lstrip("\n").replace("{at_least: 0.5}", "{at_least: 0.999}"))
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", str(path), "-p", "no:cacheprovider", "--circuitcheck-report-dir",
         str(tmp_path / "r"), "-q", "--rootdir", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    found = re.search(r"estimate (\S+) \(CI (\S+) \.\. (\S+)\), threshold >= 0.999", proc.stdout)
    assert found, proc.stdout
    for number in found.groups():  # 4 significant digits as the reports show them, not 0.6818181818181818
        assert len(re.sub(r"[-.]", "", number).lstrip("0")) <= 4, number
