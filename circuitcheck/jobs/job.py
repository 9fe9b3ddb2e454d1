"""One (file, model) job: what an executor runs, in this process or on a Ray worker.

A :class:`Job` is a small, picklable description (paths, a model string, the options that shape the run);
the worker compiles and runs it itself, so no model, plan or tensor crosses a process boundary on the way
out. :func:`run_job` is the one path from a job to its :class:`JobResult`, whichever executor calls it.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from circuitcheck.errors import CircuitcheckError, DataError, SpecError, SpecErrors
from circuitcheck.jobs.cache import ResultCache
from circuitcheck.jobs.options import RunOptions
from circuitcheck.plan.compile import FilePlan, compile_file
from circuitcheck.report.progress import Tracker
from circuitcheck.report.report import Report, controls_of, run_plan
from circuitcheck.verdict.baseline import read_baseline
from circuitcheck.zoo.options import LoadOptions, loading

if TYPE_CHECKING:
    from collections.abc import Callable


@dataclass(frozen=True)
class Job:
    """Run ``path`` on ``model`` (None: the file's own). ``variant``: a job of ``compare``: claims that do not
    fit the model are left out (not applicable), and a file that cannot compile on it runs nothing.
    ``load``: where and in what precision the model runs (a ``cuda`` device asks Ray for a GPU)."""

    path: Path
    model: str | None
    options: RunOptions
    argv: list[str] | None = None
    baseline: Path | None = None
    cache: Path | None = None
    variant: bool = False
    load: LoadOptions = field(default_factory=LoadOptions)
    cwd: str = field(default_factory=os.getcwd)
    """The working directory the job's relative paths mean (a Ray worker runs there)."""
    name: str | None = None
    """What reports and the progress bar call the model (a variant as the user gave it); ``model`` is then its
    resolved folder."""

    @property
    def model_name(self) -> str | None:
        return self.name if self.name is not None else self.model

    @property
    def label(self) -> str:
        """How errors and the progress bar name the job: the file, and the model when one was given."""
        return str(self.path) if self.model_name is None else f"{self.path} on {self.model_name}"


@dataclass(frozen=True)
class JobResult:
    """What came of a job: its report, or ``error`` (one line naming the file and model; the run's exit code is
    then 2). ``not_applicable``: claims left out on a variant (claim id -> the compiler's reason); a variant on
    which nothing could compile has no report and every claim here. ``attempts`` > 1: the job was retried after
    its worker died."""

    job: Job
    report: Report | None = None
    not_applicable: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    attempts: int = 1
    seconds: float = 0.0
    """The job's wall time where it ran (compile, run, judge, detach): a Ray run's overhead is the rest."""


def run_compiled(
    plan: FilePlan, options: RunOptions, *, tracker: Tracker | None = None, baseline: Path | None = None,
    argv: list[str] | None = None, cache: Path | None = None, shown: str = "",
) -> Report:
    """A compiled plan -> its report: read the baseline, reuse a cached result when its key matches (see
    :mod:`circuitcheck.jobs.cache`), else run and judge (and store the result when ``cache`` is given)."""
    steps = tracker or Tracker(0, enabled=False)
    stored = read_baseline(baseline, plan.name) if baseline is not None else None
    null_model = controls_of(plan, options.controls)
    results = ResultCache(cache) if cache is not None else None
    key = results.key(plan, options, stored) if results is not None else ""
    with steps.step(f"running {len(plan.claims)} claims of {shown or plan.path}"):
        reused = results.load(key, argv) if results is not None else None
        if reused is not None:
            return reused
        report = run_plan(
            plan, max_rows=options.max_rows, resume=options.resume,
            progress=tracker.note if tracker else None, baseline=stored, argv=argv,
            memory_budget=None if options.memory_budget_gib is None else int(options.memory_budget_gib * 2**30),
            null_model=null_model,
        )
    if results is not None:
        return results.store(key, report)
    return report


def _compile_variant(job: Job, steps: Tracker) -> FilePlan | JobResult:
    """A variant's plan, or the result of a variant on which the file cannot compile (every claim not
    applicable, with the compiler's first line as the reason)."""
    from circuitcheck.spec.hypothesis import load_hypothesis

    with steps.step(f"{job.model_name}: loading and compiling"), loading(job.load):
        try:
            return compile_file(job.path, job.model, skip_inapplicable=True)
        except (SpecError, SpecErrors, DataError) as err:
            reason = str(err).splitlines()[0]
            spec, _ = load_hypothesis(job.path)
            steps.advance()  # its run step
            return JobResult(job, None, {c.id: reason for c in spec.claims})


def run_job(job: Job, tracker: Tracker | None = None) -> JobResult:
    """Compile and run one job in this process. Bad input or an invalid run raises
    :class:`~circuitcheck.errors.CircuitcheckError` (the executor turns it into the job's error)."""
    steps = tracker or Tracker(0, enabled=False)
    if job.variant:
        compiled = _compile_variant(job, steps)
        if isinstance(compiled, JobResult):
            return compiled
        plan = compiled
    else:
        with steps.step(f"loading and compiling {job.path}"), loading(job.load):
            plan = compile_file(job.path, job.model)
    shown = f"{job.model_name}" if job.variant else str(job.path)
    report = run_compiled(plan, job.options, tracker=tracker, baseline=job.baseline, argv=job.argv,
                          cache=job.cache, shown=shown)
    return JobResult(job, report, dict(plan.not_applicable))


def run_caught(job: Job, tracker: Tracker | None = None,
               finish: Callable[[JobResult], JobResult] | None = None) -> JobResult:
    """:func:`run_job`, with bad input or an invalid run as the job's error instead of an exception (what
    ``circuitcheck run`` has always done per file: report it, exit 2, go on with the next file). ``finish``
    post-processes a result (a Ray worker detaches the report from its model)."""
    start = time.perf_counter()
    try:
        result = run_job(job, tracker)
    except CircuitcheckError as err:  # a variant's error names its model: the file's errors name only the file
        message = f"{job.label}: {err}" if job.variant else str(err)
        return JobResult(job, error=message, seconds=time.perf_counter() - start)
    done = finish(result) if finish is not None else result
    return replace(done, seconds=time.perf_counter() - start)

