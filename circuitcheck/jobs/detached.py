"""A report without its model: what a Ray worker sends back and what the result cache stores.

A :class:`~circuitcheck.report.report.Report` keeps the run behind it (the plan, with the loaded model, and the
captured activations) to draw its figures on demand. A detached report draws them once, where the model is, and
keeps only names and numbers: the verdicts, the JSON document, the drawings, and each claim's measurement (the
per-sequence totals a comparison pairs). It writes the same Markdown, JSON and HTML as the report it came from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

from circuitcheck.report.circuit_svg import CircuitDrawing
from circuitcheck.report.figures import Figures
from circuitcheck.report.report import Report
from circuitcheck.run.execute import FileResult

Drawings = tuple[list[CircuitDrawing], Figures]


@dataclass(frozen=True)
class DetachedReport(Report):
    """A :class:`Report` whose ``result`` has no plan (``result.plan`` is None: the model stayed where it ran);
    ``result.claims`` keeps the measurements, ``result.seconds`` the run's time."""

    stored_drawings: Drawings = field(default=([], {}), repr=False)

    def drawings(self) -> Drawings:
        return self.stored_drawings


def detach(report: Report, keep_measurements: bool = True) -> DetachedReport:
    """``report`` without its plan and activations; ``keep_measurements=False`` also drops the per-claim
    measurements (the cache stores verdicts, not per-sequence tensors)."""
    if isinstance(report, DetachedReport):
        return report
    ran = report.result
    claims = ran.claims if keep_measurements else ()
    # The plan holds the model: None here is what "detached" means, and drawings() no longer reads it.
    bare = FileResult(cast(Any, None), claims, ran.self_checks, ran.n_forward_rows, ran.seconds, dict(ran.timings))
    return DetachedReport(report.name, report.claims, report.summary, report.document, bare, report.drawings())

