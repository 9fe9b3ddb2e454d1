"""pytest plugin: ``pytest hypotheses/`` collects every claim of every hypothesis file as a test.

Registered through the ``pytest11`` entry point. A file is run once (all its claims
share batched forward passes); each claim is then one test item. A failing or
inconclusive claim fails its item with the statement, estimate, interval, threshold
and the path of the written report.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

_MARKERS = ("version: 1", "claims:")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("circuitcheck")
    group.addoption(
        "--circuitcheck-report-dir",
        default="reports",
        help="where hypothesis files collected by pytest write their reports (default: reports)",
    )


def pytest_collect_file(parent: pytest.Collector, file_path: Path) -> pytest.Collector | None:
    if file_path.suffix not in (".yaml", ".yml"):
        return None
    try:
        head = file_path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    if not all(marker in head for marker in _MARKERS):
        return None
    return HypothesisFileCollector.from_parent(parent, path=file_path)


class ClaimFailed(Exception):
    """A claim that did not pass; its message is the whole story."""


class HypothesisFileCollector(pytest.File):
    def collect(self) -> Iterator[pytest.Item]:
        from circuitcheck.spec.hypothesis import load_hypothesis

        spec, _ = load_hypothesis(self.path)
        for claim in spec.claims:
            yield ClaimItem.from_parent(self, name=claim.id)

    def run_once(self) -> dict[str, Any]:
        cached = getattr(self, "_doc", None)
        if cached is None:
            from circuitcheck.plan.compile import compile_file
            from circuitcheck.report.document import build_document
            from circuitcheck.report.render import write_reports
            from circuitcheck.run.execute import run_file

            result = run_file(compile_file(self.path))
            cached = build_document(result, ["pytest", str(self.path)])
            report_dir = Path(self.config.getoption("--circuitcheck-report-dir"))
            cached["_report"] = str(write_reports(cached, report_dir)[0])
            self._doc = cached
        return cached


class ClaimItem(pytest.Item):
    def runtest(self) -> None:
        parent = self.parent
        assert isinstance(parent, HypothesisFileCollector)
        doc = parent.run_once()
        claim = next(c for c in doc["claims"] if c["id"] == self.name)
        if claim["as_expected"] is not True:
            raise ClaimFailed(
                f"{claim['verdict'].upper()}: {claim['statement']}\n"
                f"  estimate {claim['estimate']} (CI {claim['ci_low']} .. {claim['ci_high']}), threshold {claim['threshold']}\n"
                f"  {claim['sentence']}\n"
                f"  report: {doc['_report']}"
            )

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        from circuitcheck.errors import CircuitcheckError

        if isinstance(excinfo.value, (ClaimFailed, CircuitcheckError)):
            return str(excinfo.value)
        return str(super().repr_failure(excinfo))

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, 0, f"claim {self.name}"
