"""pytest plugin: ``pytest hypotheses/`` collects every claim of every hypothesis file as a test.

Registered through the ``pytest11`` entry point. A file is run once (all its claims
share batched forward passes); each claim is then one test item. A failing or
inconclusive claim fails its item with the statement, estimate, interval, threshold
and the path of the written report.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from circuitcheck.api import MAX_ROWS_HELP, positive_whole_number

if TYPE_CHECKING:
    from circuitcheck.report.report import Report

_MARKERS = ("version: 1", "claims:")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("circuitcheck")
    group.addoption(
        "--circuitcheck-report-dir",
        default="reports",
        help="where hypothesis files collected by pytest write their reports (default: reports)",
    )
    group.addoption("--circuitcheck-max-rows", "--circuitcheck-max-batch", type=positive_whole_number, default=None,
                    help=MAX_ROWS_HELP)
    group.addoption("--circuitcheck-no-resume", dest="circuitcheck_resume", action="store_false",
                    help="run every intervention pass from the tokens instead of resuming from cached clean "
                         "activations")


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

    def run_once(self) -> tuple[Report, Path]:
        """The file's report (run once for all its claims) and the path of its Markdown report."""
        cached: tuple[Report, Path] | None = getattr(self, "_report", None)
        if cached is None:
            from circuitcheck.api import check

            option = self.config.getoption
            report = check(self.path, max_rows=option("--circuitcheck-max-rows"), resume=option("circuitcheck_resume"),
                           argv=["pytest", str(self.path)])
            cached = (report, report.write(option("--circuitcheck-report-dir"))[0])
            self._report = cached
        return cached


class ClaimItem(pytest.Item):
    def runtest(self) -> None:
        parent = self.parent
        assert isinstance(parent, HypothesisFileCollector)
        report, written = parent.run_once()
        if not report.claims[self.name].passed:
            from circuitcheck.report.text import num

            claim = next(c for c in report.document["claims"] if c["id"] == self.name)
            raise ClaimFailed(  # numbers as the reports show them: 4 significant digits, n/a when undefined
                f"{claim['verdict'].upper()}: {claim['statement']}\n"
                f"  estimate {num(claim['estimate'])} (CI {num(claim['ci_low'])} .. {num(claim['ci_high'])}), "
                f"threshold {claim['threshold']}\n"
                f"  {claim['sentence']}\n"
                f"  report: {written}"
            )

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        from circuitcheck.errors import CircuitcheckError

        if isinstance(excinfo.value, (ClaimFailed, CircuitcheckError)):
            return str(excinfo.value)
        return str(super().repr_failure(excinfo))

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, 0, f"claim {self.name}"
