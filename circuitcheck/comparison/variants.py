"""Run one hypothesis file on each model variant, on the same seeded data.

A claim that cannot apply to a variant (a claim naming an MLP, on an attention-only
model) is left out of that variant's run and recorded with the compiler's reason;
a dataset that does not fit a variant makes every claim not applicable there.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from circuitcheck.errors import CircuitcheckError
from circuitcheck.jobs.executors import Executor, LocalExecutor
from circuitcheck.jobs.job import Job, RunOptions
from circuitcheck.report.circuit_svg import CircuitDrawing
from circuitcheck.report.figures import Figures
from circuitcheck.report.progress import Tracker
from circuitcheck.report.report import Report
from circuitcheck.run.engine import DEFAULT_MAX_ROWS
from circuitcheck.run.execute import FileResult
from circuitcheck.spec.hypothesis import load_hypothesis, report_stem
from circuitcheck.zoo.load import FILE_FOLDER, checkpoint_of, load_zoo_card, resolve_model_dir, sha256_file
from circuitcheck.zoo.options import LoadOptions, current_options

NEED_TWO = "compare needs at least two models: give --model twice or more, or list them under 'variants:' in the file"


@dataclass(frozen=True)
class VariantRun:
    """One variant: its report, or None when nothing could run on it."""

    model: str
    report: Report | None
    not_applicable: dict[str, str] = field(default_factory=dict)

    @property
    def result(self) -> FileResult | None:
        return None if self.report is None else self.report.result

    @property
    def doc(self) -> dict[str, Any] | None:
        return None if self.report is None else self.report.document


@dataclass(frozen=True)
class Comparison:
    path: Path
    spec: Any
    variants: tuple[VariantRun, ...]
    failed: dict[str, str] = field(default_factory=dict)
    """Variants whose job failed (model -> the error, naming the file and model): shown as not applicable, and
    ``compare`` exits 2."""

    @property
    def name(self) -> str:
        return report_stem(self.spec, self.path)

    def drawings(self) -> dict[str, tuple[list[CircuitDrawing], Figures]]:
        """Each variant that ran: its circuits as graphs and its claims' figures (heatmaps, minimality circuits),
        for the HTML report."""
        return {v.model: v.report.drawings() for v in self.variants if v.report is not None}


def variant_models(spec: Any, models: Sequence[str]) -> list[str]:
    """The models to compare: the command line's, else the file's ``variants``; at least two, no repeats."""
    chosen = list(models) or list(getattr(spec, "variants", None) or [])
    if len(chosen) < 2:
        raise CircuitcheckError(NEED_TWO)
    repeated = sorted({m for m in chosen if chosen.count(m) > 1})
    if repeated:
        raise CircuitcheckError(f"model {repeated[0]!r} is given twice; each variant must be a different model")
    return chosen


def same_checkpoints(chosen: Sequence[str], folders: Sequence[Path]) -> None:
    """Refuse two variants that name one model folder (a zoo name and its path, two spellings of a
    path, a link): the comparison would measure a model against itself under two names. A copy in
    another folder is allowed; its card may plant other data, and comparing a copy is a sanity check."""
    seen: dict[Path, str] = {}
    for model, folder in zip(chosen, folders, strict=True):
        where = folder.resolve()
        if where in seen:
            ckpt = checkpoint_of(folder, load_zoo_card(str(folder)))
            raise CircuitcheckError(
                f"variants {seen[where]!r} and {model!r} are the same checkpoint (sha256 {sha256_file(ckpt)[:12]}..., "
                f"both {ckpt}); comparing a model with itself measures nothing: give each model once"
            )
        seen[where] = model


def compare_file(
    path: Path, models: Sequence[str] = (), max_rows: int = DEFAULT_MAX_ROWS, argv: list[str] | None = None,
    tracker: Tracker | None = None, resume: bool = True, models_base: Path | None = None, controls: bool = False,
    executor: Executor | None = None, load: LoadOptions | None = None,
) -> Comparison:
    """Run ``path`` on each model. Relative paths among ``models`` resolve against ``models_base``
    (a command line passes the current directory), else the file's folder, like ``variants:``. The null-model
    control (``controls``, or the file's ``controls:``) runs on each variant's own re-initialised copies.
    Each (file, model) pair is a job handed to ``executor`` (default: one after another in this process), its
    model loaded with ``load`` (default: the current :func:`~circuitcheck.zoo.options.loading` block's)."""
    spec, _ = load_hypothesis(path)
    chosen = variant_models(spec, models)
    here = path.resolve().parent
    base, base_is = (models_base, None) if models and models_base is not None else (here, FILE_FOLDER)
    folders = [resolve_model_dir(m, base, base_is) for m in chosen]  # a misspelt model fails before anything runs
    same_checkpoints(chosen, folders)
    options = RunOptions(max_rows, resume, None, controls)
    jobs = [Job(path, str(folder.resolve()), options, argv, variant=True, load=load or current_options(), name=model)
            for model, folder in zip(chosen, folders, strict=True)]
    runs: list[VariantRun] = []
    failed: dict[str, str] = {}
    for model, ran in zip(chosen, (executor or LocalExecutor()).run(jobs, tracker), strict=True):
        if ran.error is not None:
            failed[model] = ran.error
            runs.append(VariantRun(model, None, {c.id: f"failed: {ran.error}" for c in spec.claims}))
        else:
            runs.append(VariantRun(model, ran.report, ran.not_applicable))
    return Comparison(path, spec, tuple(runs), failed)
