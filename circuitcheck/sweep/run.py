"""``circuitcheck sweep``: compile a file, sweep its model on its data, write the HTML, JSON and draft.

The file is compiled for its model, dataset and position selections (claims that do not fit the model are
set aside, not refused: a sweep does not need them to be meaningful).
"""

from __future__ import annotations

import json
import math
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from circuitcheck.atomic import write_atomic
from circuitcheck.errors import CircuitcheckError
from circuitcheck.metrics import metrics
from circuitcheck.plan.compile import FilePlan, compile_file
from circuitcheck.report.provenance import provenance
from circuitcheck.run.engine import DEFAULT_MAX_ROWS
from circuitcheck.run.execute import rows_per_call
from circuitcheck.sweep.cells import OVER, Over, component_name, effects, sweep_values
from circuitcheck.sweep.corruption import resolve_corruption
from circuitcheck.sweep.draft import DraftCell, draft_text
from circuitcheck.sweep.render import sweep_html

DEFAULT_OUT = Path("reports/sweeps")
DEFAULT_TOP_K = 5


def _num(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


@dataclass(frozen=True)
class SweepReport:
    """A finished sweep: its JSON document (every cell), the draft's text, and notes on cells left out of it."""

    document: dict[str, Any]
    draft: str | None
    """The draft hypothesis file's text; None when none of the top cells qualified for a claim."""
    notes: list[str]

    @property
    def name(self) -> str:
        return f"{self.document['name']}-sweep-{self.document['over']}"

    def write(self, folder: Path) -> list[Path]:
        folder.mkdir(parents=True, exist_ok=True)
        draft = folder / f"{self.document['name']}-draft.yaml" if self.draft is not None else None
        doc = self.document | {"draft": None if draft is None else str(draft)}
        paths = [folder / f"{self.name}.html", folder / f"{self.name}.json"]
        write_atomic(paths[0], sweep_html(doc))
        write_atomic(paths[1], json.dumps(doc, indent=2, allow_nan=False) + "\n")
        if draft is not None and self.draft is not None:
            write_atomic(draft, self.draft)
            paths.append(draft)
        return paths


def sweep_file(
    path: Path, corruption: str, over: Over = "heads", *, metric: str | None = None, positions: str | None = None,
    top_k: int = DEFAULT_TOP_K, out: Path = DEFAULT_OUT, max_rows: int = DEFAULT_MAX_ROWS, resume: bool = True,
    argv: list[str] | None = None, progress: Callable[[str], None] | None = None,
    model: str | None = None,
) -> SweepReport:
    """Sweep ``over`` every site x position of the file's model on its dataset (see :mod:`circuitcheck.sweep`)."""
    if over not in OVER:
        raise CircuitcheckError(f"--over: expected one of {', '.join(OVER)}, got {over!r}\n  fix: --over heads")
    plan = compile_file(path, model, skip_inapplicable=True)
    return sweep_plan(plan, corruption, over, metric=metric, positions=positions, top_k=top_k, out=out,
                      max_rows=max_rows, resume=resume, argv=argv, progress=progress, model=model)


def sweep_plan(
    plan: FilePlan, corruption: str, over: Over, *, metric: str | None, positions: str | None, top_k: int,
    out: Path, max_rows: int, resume: bool, argv: list[str] | None, progress: Callable[[str], None] | None,
    model: str | None = None,
) -> SweepReport:
    corrupted = resolve_corruption(plan, corruption, positions, metric)
    net = plan.loaded.model
    start = time.perf_counter()
    values = sweep_values(net, plan.batch.tokens, corrupted.tokens, plan.batch.next_token, over,
                          metrics.get(corrupted.metric), corrupted.mask, rows_per_call(plan, max_rows), progress,
                          resume, counterfactual=plan.batch.counterfactual)
    seconds = time.perf_counter() - start
    stats = plan.spec.statistics
    found = effects(values, stats.bootstrap, stats.seed, stats.confidence)
    m_clean, m_corrupted, m_patched = values.means()
    cells = [
        {"layer": layer, "head": head, "position": pos, "component": component_name(over, layer, head),
         "estimate": _num(float(found.estimate[i])), "lo": _num(float(found.lo[i])), "hi": _num(float(found.hi[i])),
         "metric_patched": float(m_patched[i])}
        for i, (layer, head, pos) in enumerate(values.cells)
    ]
    order = sorted((i for i in range(len(cells)) if math.isfinite(float(found.estimate[i]))),
                   key=lambda i: -float(found.estimate[i]))
    ranked = [cells[i] for i in order]
    command = shlex.join(argv) if argv else f"circuitcheck sweep {plan.path} --corruption {corruption!r} --over {over}"
    candidates = [DraftCell(component_name(over, *values.cells[i][:2]), values.cells[i][2], float(found.estimate[i]),
                            float(found.lo[i]), float(found.hi[i])) for i in order]
    draft, notes = draft_text(plan, out, candidates, corrupted.corruption, corrupted.positions, corrupted.metric,
                              top_k, command, stats.confidence, model)
    doc = {
        "name": plan.name, "over": over, "file": str(plan.path),
        "corruption": corrupted.corruption, "corruption_source": corrupted.source,
        "metric": corrupted.metric, "positions": corrupted.positions, "n_scored": int(corrupted.mask.sum()),
        "metric_clean": m_clean, "metric_corrupted": m_corrupted,
        "estimate": "(M_patched - M_corrupted) / (M_clean - M_corrupted), M = mean metric over the scored positions",
        "statistics": {"bootstrap": stats.bootstrap, "seed": stats.seed, "confidence": stats.confidence},
        "n_layers": int(net.cfg.n_layers), "n_seqs": int(plan.batch.tokens.shape[0]),
        "seq_len": int(plan.batch.tokens.shape[1]),
        "engine": {"variants": values.n_variants, "seconds": seconds},
        "cells": cells, "top": ranked[:top_k], "draft_notes": notes,
        "provenance": provenance(plan, argv),
    }
    if m_clean == m_corrupted:
        notes.append("the corruption does not change the metric: every cell's fraction recovered is undefined")
    return SweepReport(doc, draft, notes)
