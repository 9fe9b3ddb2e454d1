"""The typed report of a comparison: what :func:`circuitcheck.compare` returns."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from circuitcheck.comparison.document import comparison_document
from circuitcheck.comparison.series import series_section
from circuitcheck.comparison.variants import Comparison
from circuitcheck.report.compare_html import comparison_html
from circuitcheck.report.matrix import comparison_markdown, terminal_matrix, write_comparison
from circuitcheck.report.render import run_id_comment, write_stamped
from circuitcheck.report.report import Report
from circuitcheck.report.series_svg import series_markdown


@dataclass(frozen=True)
class ComparisonReport:
    """One file run on several models: ``variants[model]`` is that model's own :class:`Report` (None when
    nothing could run on it), ``changed`` the (claim, variant) pairs whose verdict is not the first model's,
    ``differing`` the (claim, variant) pairs whose paired difference against the first model differs (its
    interval excludes zero and its size is at least the min effect), ``document`` the JSON comparison report;
    ``str(report)`` is the verdicts that changed, then the matrix."""

    name: str
    comparison: Comparison = field(repr=False)
    document: dict[str, Any] = field(repr=False)

    @property
    def variants(self) -> dict[str, Report | None]:
        return {v.model: v.report for v in self.comparison.variants}

    @property
    def changed(self) -> list[tuple[str, str]]:
        return [(d["claim"], d["variant"]) for d in self.document["summary"]["changed"]]

    @property
    def differing(self) -> list[tuple[str, str]]:
        return [(d["claim"], d["variant"]) for d in self.document["summary"]["differing"]]

    def write(self, report_dir: str | os.PathLike[str]) -> list[Path]:
        """Write ``<name>.md``, ``<name>.json`` and ``<name>.html`` (every variant's report, with heatmaps and
        circuit graphs); a series adds its curves (the HTML draws them, the Markdown tables them)."""
        if "series" not in self.document:
            return write_comparison(self.document, Path(report_dir), self.comparison.drawings())
        drawings = self.comparison.drawings()
        return write_stamped(self.document, Path(report_dir), _series_markdown,
                             lambda d: comparison_html(d, drawings))

    def __str__(self) -> str:
        return terminal_matrix(self.document)

    def __repr__(self) -> str:
        s = self.document["summary"]
        shape = f"{s['claims']} claims x {s['variants']} variants"
        return f"<ComparisonReport {self.name}: {shape}, {len(s['changed'])} changed, {len(s['differing'])} differing>"


def _series_markdown(doc: dict[str, Any]) -> str:
    # The series goes before the run_id comment, which closes every Markdown report.
    body = comparison_markdown({k: v for k, v in doc.items() if k != "run_id"})
    return f"{body}\n{series_markdown(doc['series'])}\n{run_id_comment(doc['run_id'])}\n"


def comparison_report(
    cmp: Comparison, min_effect: float | None = None, steps: dict[str, int | None] | None = None
) -> ComparisonReport:
    """``steps``: the models' training steps, for a checkpoint series (adds the ``series`` key)."""
    doc = comparison_document(cmp, min_effect)
    if steps is not None:
        doc["series"] = series_section(doc, steps)
    return ComparisonReport(doc["name"], cmp, doc)
