"""The library entry points: check a hypothesis file, or compare it across model variants.

    import circuitcheck
    report = circuitcheck.check("hypotheses/trigram.yaml")
    report.claims["T1"].verdict  # "pass"

The CLI (``run``, ``baseline``, ``compare``) and the pytest plugin are shells over these two calls,
so what one of them can do (heatmaps, ``max_rows``, ``resume``, baselines) all of them can.
Heavy imports (torch, TransformerLens) happen inside the calls: ``import circuitcheck`` stays cheap.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pydantic import BaseModel

    from circuitcheck.comparison.report import ComparisonReport
    from circuitcheck.jobs.job import JobResult
    from circuitcheck.plan.compile import FilePlan
    from circuitcheck.report.progress import Tracker
    from circuitcheck.report.report import Report
    from circuitcheck.sweep import SweepReport

PathLike = str | os.PathLike[str]

MAX_ROWS_HELP = (
    "most sequences in one stacked forward pass (default 4096): the variants of a pass share it, so peak memory "
    "stays bounded however many variants a file has; lower it on a small machine"
)
"""The help of ``max_rows`` in both shells: the CLI's ``--max-batch``, the pytest plugin's
``--circuitcheck-max-batch``."""


def positive_whole_number(text: str) -> int:
    """An option's whole number >= 1, for argparse (the CLI) and pytest's ``addoption``. argparse turns a
    ValueError into "invalid positive_whole_number value", naming this function; an ArgumentTypeError's text
    is shown as written, after the option's name."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {value}")
    return value


def positive_number(text: str) -> float:
    """A finite number > 0 (``run --memory-budget``); an ArgumentTypeError says what was wrong."""
    value = non_negative_number(text)
    if value == 0:
        raise argparse.ArgumentTypeError("expected a number > 0, got 0")
    return value


def non_negative_number(text: str) -> float:
    """A finite number >= 0 (``compare --min-effect``); an ArgumentTypeError says what was wrong."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text}")
    return value


SPEC_NAME = "<spec>"
"""What a spec built in Python is called in errors and provenance (its reports are ``spec.*`` unless it has
a ``name``)."""


def _engine_rows(max_rows: int | None) -> int:
    from circuitcheck.run.engine import DEFAULT_MAX_ROWS

    return DEFAULT_MAX_ROWS if max_rows is None else max_rows


def _compile(source: PathLike | Mapping[str, Any] | BaseModel, model: str | None) -> FilePlan:
    """A file's plan; or, for a spec built in Python (a mapping shaped like the YAML, or a spec object), the
    plan of that spec, validated like a file (errors say ``<spec>``) with paths relative to the current directory."""
    from pydantic import BaseModel

    from circuitcheck.plan.compile import compile_file, compile_spec
    from circuitcheck.spec.hypothesis import validate_hypothesis
    from circuitcheck.spec.yaml_source import SourceMap

    if isinstance(source, (str, os.PathLike)):
        return compile_file(Path(source), model)
    data = source
    if isinstance(source, BaseModel):  # validated again, as a file would be: cross-references too
        data = source.model_dump(mode="json", by_alias=True, exclude_unset=True)
    smap = SourceMap(SPEC_NAME, {}, {})
    spec = validate_hypothesis(data, smap)
    if spec.name is None:
        spec = spec.model_copy(update={"name": "spec"})
    digest = hashlib.sha256(json.dumps(spec.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()
    return compile_spec(spec, smap, Path(SPEC_NAME), model, base=Path.cwd(), source_sha256=digest)


def check(
    path_or_spec: PathLike | Mapping[str, Any] | BaseModel, model: str | None = None, *,
    max_rows: int | None = None, resume: bool = True,
    baseline: PathLike | None = None, report_dir: PathLike | None = None, argv: Sequence[str] | None = None,
    tracker: Tracker | None = None, memory_budget_gib: float | None = None, controls: bool = False,
    device: str = "cpu", dtype: str = "float32", trust_bridge: bool = False, cache: PathLike | None = None,
) -> Report:
    """Load, compile, run and judge a hypothesis file (or a spec built in Python: a mapping shaped like the
    YAML, or a spec object); returns its :class:`Report`.

    - ``model``: run against this model instead of the file's (a zoo name, or a model directory relative
      to the current directory; the file's own ``model:`` resolves against the file's folder).
    - ``max_rows``: most sequences in one stacked forward pass (default 4096); lower it on a small machine.
    - ``resume``: resume intervention passes from cached clean activations (False: run every pass from the tokens).
    - ``memory_budget_gib``: the most clean activations a run may keep, in GiB (default: 10% of RAM); resume
      caches that do not fit are dropped, and activations the claims need that do not fit are an error.
    - ``baseline``: a baseline JSON written by ``circuitcheck baseline``; claims that regressed fail.
    - ``report_dir``: also write ``<name>.{md,json,html}`` there (or call ``report.write(folder)`` later).
    - ``argv``: the command a report's provenance records; ``tracker``: a progress bar (the CLI's).
    - ``controls``: also run the null-model control (every claim on re-initialised copies of the model; the
      file's ``controls: {null_model: {n, seed}}``, else n=3 copies from seed 0). A file that sets ``controls:``
      runs it either way. A claim that passes on a copy is uninformative and capped at inconclusive.
    - ``device`` (``cpu``, ``cuda``, ``mps``, ``auto``) and ``dtype`` (``float32``, ``bfloat16``, ``float16``): where
      and in what precision the model runs; the self-check tolerances scale with the dtype.
    - ``trust_bridge``: run on a Hugging Face model whose TransformerLens bridge disagrees with its own forward
      (by default a load error); the mismatch is recorded in the report's self-checks and provenance.
    - ``cache``: a result cache folder: when the file, checkpoint, dataset tokens, circuitcheck version and these
      options match a stored result, it is reused (no forward pass; its provenance says ``cache: reused``), else
      the result is run and stored (see :mod:`circuitcheck.jobs.cache`).

    Raises :class:`~circuitcheck.errors.CircuitcheckError` for bad input or an invalid run, before any
    forward pass where it can (a missing baseline entry, for one).
    """
    from circuitcheck.jobs.job import RunOptions, run_compiled
    from circuitcheck.report.progress import Tracker
    from circuitcheck.zoo.options import LoadOptions, loading

    steps = tracker or Tracker(0, enabled=False)
    shown = path_or_spec if isinstance(path_or_spec, (str, os.PathLike)) else SPEC_NAME
    with steps.step(f"loading and compiling {shown}"), loading(LoadOptions(device, dtype, trust_bridge)):
        plan = _compile(path_or_spec, model)
    report = run_compiled(
        plan, RunOptions(_engine_rows(max_rows), resume, memory_budget_gib, controls), tracker=tracker,
        baseline=Path(baseline) if baseline is not None else None, argv=list(argv) if argv is not None else None,
        cache=Path(cache) if cache is not None else None, shown=str(shown),
    )
    if report_dir is not None:
        report.write(report_dir)
    return report


def check_files(
    paths: Sequence[PathLike], model: str | None = None, *, max_rows: int | None = None, resume: bool = True,
    baseline: PathLike | None = None, argv: Sequence[str] | None = None, tracker: Tracker | None = None,
    memory_budget_gib: float | None = None, controls: bool = False, device: str = "cpu", dtype: str = "float32",
    trust_bridge: bool = False, cache: PathLike | None = None, executor: str = "local",
    ray_address: str | None = None,
) -> Iterator[JobResult]:
    """:func:`check` over several files, each file a job on ``executor``: ``local`` (one after another, here) or
    ``ray`` (each a Ray task; ``ray_address`` joins a cluster, else a local Ray starts with this machine's CPUs;
    ``device="cuda"`` asks Ray for a GPU per job). Yields each file's :class:`~circuitcheck.jobs.job.JobResult`
    in file order: its report, or its error (bad input, an invalid run, a worker that died twice); the other
    files' results are kept. The other options are as for :func:`check`."""
    from circuitcheck.jobs.executors import executor_for
    from circuitcheck.jobs.job import Job, RunOptions
    from circuitcheck.zoo.options import LoadOptions

    chosen = executor_for(executor, ray_address)
    options = RunOptions(_engine_rows(max_rows), resume, memory_budget_gib, controls)
    jobs = [
        Job(Path(p), model, options, list(argv) if argv is not None else None,
            Path(baseline) if baseline is not None else None, Path(cache) if cache is not None else None,
            load=LoadOptions(device, dtype, trust_bridge))
        for p in paths
    ]
    return chosen.run(jobs, tracker)


def compare(
    path: PathLike, models: Sequence[str] = (), *, max_rows: int | None = None, resume: bool = True,
    report_dir: PathLike | None = None, models_base: PathLike | None = None, argv: Sequence[str] | None = None,
    tracker: Tracker | None = None, min_effect: float | None = None, controls: bool = False,
    device: str = "cpu", dtype: str = "float32", trust_bridge: bool = False,
    executor: str = "local", ray_address: str | None = None, series: str | None = None,
) -> ComparisonReport:
    """Run the file at ``path`` on each of ``models`` (or the file's ``variants:``; at least two) on the
    same seeded data, and compare them claim by claim against the first.

    ``series``: a folder of checkpoint folders, or a glob (relative to ``models_base``, else the current
    directory), run in training-step order instead of ``models``; the report adds each claim's curve.

    ``min_effect``: the smallest difference that matters (on each claim's estimate scale); a difference is
    marked only when its interval excludes zero and its size is at least this, or the claim's own
    ``min_effect``. Relative model paths resolve against ``models_base`` when given (a command line passes
    the current directory), else against the file's folder. ``max_rows``, ``resume``, ``report_dir``,
    ``argv``, ``tracker``, ``controls`` (the null-model control, on each variant), ``device``, ``dtype`` and
    ``trust_bridge`` are as for :func:`check`. ``executor``: ``local`` (one variant after another, here) or
    ``ray`` (each variant a Ray task; ``ray_address`` joins a cluster, else a local Ray starts). A variant whose
    job fails is shown as not applicable, with its error in ``report.comparison.failed``.
    """
    from circuitcheck import comparison
    from circuitcheck.comparison.report import comparison_report

    if min_effect is not None and not (math.isfinite(min_effect) and min_effect >= 0):
        from circuitcheck.errors import CircuitcheckError

        raise CircuitcheckError(f"min_effect must be a finite number >= 0, got {min_effect}")
    from contextlib import nullcontext

    from circuitcheck.jobs.executors import executor_for
    from circuitcheck.zoo.options import LoadOptions, loading

    steps = None
    if series is not None:
        from circuitcheck.comparison.series import MIXED, series_models

        if models:
            from circuitcheck.errors import CircuitcheckError

            raise CircuitcheckError(MIXED)
        models_base = models_base if models_base is not None else Path.cwd()
        models, steps = series_models(series, Path(models_base))
    load = LoadOptions(device, dtype, trust_bridge)
    # On Ray the device is resolved by each worker: the driver may have no GPU.
    with loading(load) if executor == "local" else nullcontext(load):
        found = comparison.compare_file(
            Path(path), models, _engine_rows(max_rows), list(argv) if argv is not None else None, tracker,
            resume=resume, models_base=Path(models_base) if models_base is not None else None, controls=controls,
            executor=executor_for(executor, ray_address), load=load,
        )
    report = comparison_report(found, min_effect, steps)
    if report_dir is not None:
        report.write(report_dir)
    return report


def sweep(
    path: PathLike, corruption: str, over: str = "heads", *, metric: str | None = None, positions: str | None = None,
    top_k: int | None = None, out: PathLike | None = None, write: bool = True, model: str | None = None,
    max_rows: int | None = None, resume: bool = True, argv: Sequence[str] | None = None, tracker: Tracker | None = None,
) -> SweepReport:
    """A patching sweep of the file at ``path``: every head (``over="heads"``), residual stream
    (``"resid"``) or MLP (``"mlp"``) x every position, its clean activation patched into the run that
    ``corruption`` makes (a claim id of the file, or a corruption written inline as YAML), on the engine.

    ``metric`` and ``positions`` default to the named claim's (inline: ``logprob`` at every position with a next
    token). Writes ``<name>-sweep-<over>.{html,json}`` and the draft ``<name>-draft.yaml`` into ``out`` (default
    ``reports/sweeps``; with ``write=False``, call ``report.write(out)`` later: the draft's relative model and data
    paths are written for that folder). The draft's claims use a fresh dataset seed, so running it tests the
    sweep's top ``top_k`` cells on data the sweep never saw. ``model``, ``max_rows``, ``resume``, ``argv`` and
    ``tracker`` are as for :func:`check`.
    """
    from circuitcheck.report.progress import Tracker
    from circuitcheck.sweep import DEFAULT_OUT, DEFAULT_TOP_K, sweep_file

    steps = tracker or Tracker(0, enabled=False)
    folder = DEFAULT_OUT if out is None else Path(out)
    with steps.step(f"sweeping {over} of {path}"):
        report = sweep_file(
            Path(path), corruption, over,  # type: ignore[arg-type]  # checked in sweep_file
            metric=metric, positions=positions, top_k=DEFAULT_TOP_K if top_k is None else top_k,
            out=folder, max_rows=_engine_rows(max_rows), resume=resume,
            argv=list(argv) if argv is not None else None, progress=tracker.note if tracker else None, model=model,
        )
    if write:
        report.write(folder)
    return report
