"""The typed report of one checked file: what :func:`circuitcheck.check` returns.

It holds the decided verdicts (typed), the JSON document every renderer reads, and the run
behind them (for figures and comparisons); ``write`` renders the files the CLI writes.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from circuitcheck.plan.compile import FilePlan, null_plans
from circuitcheck.report.circuit_svg import CircuitDrawing
from circuitcheck.report.document import build_document
from circuitcheck.report.figures import Figures, attention_figures, circuit_figures
from circuitcheck.report.render import terminal_table, write_reports
from circuitcheck.report.text import headline
from circuitcheck.run.execute import FileResult, run_file
from circuitcheck.spec.base import NullModel
from circuitcheck.verdict.baseline import Baseline
from circuitcheck.verdict.stage import judge_file
from circuitcheck.verdict.summary import Summary
from circuitcheck.verdict.verdict import Verdict


@dataclass(frozen=True)
class Report:
    """One file's verdicts: ``report.claims["T1"].verdict`` is ``"pass"``, ``"fail"`` or ``"inconclusive"``,
    with ``.estimate``, ``.ci_low``, ``.ci_high``, ``.sentence`` and ``.as_expected``.

    ``exit_code`` is what ``circuitcheck run`` exits with for this file (0 pass, 1 fail, 3 inconclusive);
    ``document`` is the JSON report (schema in docs/reports.md); ``str(report)`` is the terminal table.
    """

    name: str
    claims: dict[str, Verdict]
    summary: Summary
    document: dict[str, Any] = field(repr=False)
    result: FileResult = field(repr=False)

    @property
    def exit_code(self) -> int:
        return self.summary.exit_code

    @property
    def passed(self) -> bool:
        """Every claim came out as its file expects."""
        return self.exit_code == 0

    def write(self, report_dir: str | os.PathLike[str]) -> list[Path]:
        """Write ``<name>.md``, ``<name>.json`` and ``<name>.html`` (with attention heatmaps and circuit graphs)
        into ``report_dir``; returns their paths (md, json, html)."""
        circuits, figures = self.drawings()
        return write_reports(self.document, Path(report_dir), figures, circuits)

    def drawings(self) -> tuple[list[CircuitDrawing], Figures]:
        """(the file's circuits as graphs, each claim's figures: attention heatmaps, a minimality claim's circuit)."""
        circuits, per_claim = circuit_figures(self.result, self.document)
        figures = attention_figures(self.result)
        for claim_id, drawn in per_claim.items():
            figures.setdefault(claim_id, []).extend(drawn)
        return circuits, figures

    def __str__(self) -> str:
        return terminal_table(self.document)

    def __repr__(self) -> str:
        return f"<Report {self.name}: {headline(self.document['summary'])}; exit code {self.exit_code}>"


def report_of(
    result: FileResult, baseline: Baseline | None = None, argv: list[str] | None = None,
    nulls: Sequence[tuple[int, FileResult]] = (),
) -> Report:
    """Result -> Report: decide every verdict (:func:`~circuitcheck.verdict.stage.judge_file`), then lay out
    the document. ``nulls``: the file's results on re-initialised copies of its model (the null-model control)."""
    judged = judge_file(result, baseline, nulls)
    claims = {v.claim_id: v for v in judged.verdicts}
    return Report(result.plan.name, claims, judged.summary, build_document(result, judged, argv), result)


def run_plan(
    plan: FilePlan, *, max_rows: int, resume: bool, progress: Callable[[str], None] | None = None,
    baseline: Baseline | None = None, argv: list[str] | None = None, memory_budget: int | None = None,
    null_model: NullModel | None = None,
) -> Report:
    """Plan -> Report: run, judge, lay out. Every entry point (``check``, ``compare``, so the CLI and the
    pytest plugin) takes this one path after compiling. ``null_model``: also run the null-model control
    (every claim on re-initialised copies of the model, on the same dataset tokens)."""
    result = run_file(plan, max_rows=max_rows, resume=resume, progress=progress, memory_budget=memory_budget)
    nulls = run_nulls(plan, null_model, max_rows=max_rows, resume=resume, progress=progress,
                      memory_budget=memory_budget) if null_model is not None else []
    return report_of(result, baseline, argv, nulls)


def run_nulls(
    plan: FilePlan, null_model: NullModel, *, max_rows: int, resume: bool,
    progress: Callable[[str], None] | None = None, memory_budget: int | None = None,
) -> list[tuple[int, FileResult]]:
    """The null-model control: ``plan``'s claims run on each re-initialised copy of its model."""
    out = []
    for seed, null_plan in null_plans(plan, null_model.n, null_model.seed):
        if progress is not None:
            progress(f"null model, seed {seed}")
        out.append((seed, run_file(null_plan, max_rows=max_rows, resume=resume, progress=progress,
                                   memory_budget=memory_budget)))
    return out


def controls_of(plan: FilePlan, controls: bool) -> NullModel | None:
    """The null-model control a run takes: the file's ``controls: null_model`` when it sets one, else the
    defaults (``n: 3, seed: 0``) when ``controls`` (``--controls``) asks for it, else none."""
    written = getattr(plan.spec, "controls", None)
    if written is not None:
        return written.null_model
    return NullModel() if controls else None
