"""Executors: where a list of (file, model) jobs runs.

- ``local`` (the default): one job after another in this process, exactly as before executors existed; Ray is
  never imported.
- ``ray``: each job is a Ray task (``--ray-address`` joins a cluster; without it a local Ray starts with this
  machine's CPUs). A job on ``cuda`` asks for a GPU, so Ray places it on a GPU node. Workers compile and run the
  job themselves and send back a detached report (:mod:`circuitcheck.jobs.detached`): the same verdicts,
  document and drawings, no model. A job that raises becomes that job's error; a worker that dies mid-job is
  retried once (Ray's ``max_retries``), and the report's provenance says so (``retried``).

Both yield results in job order, so what the CLI prints and writes does not depend on the executor.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from typing import Any, Protocol

from circuitcheck.errors import CircuitcheckError
from circuitcheck.jobs.detached import detach
from circuitcheck.jobs.job import Job, JobResult, run_caught
from circuitcheck.report.progress import Tracker

EXECUTORS = ("local", "ray")
STEPS_PER_JOB = {"local": 2, "ray": 1}
"""Steps a job takes on the progress bar: compile and run here; one per finished task on Ray."""

RAY_MISSING = (
    "--executor ray needs Ray, which is not installed\n  fix: pip install 'circuitcheck[ray]' "
    "(or run with --executor local)"
)


class Executor(Protocol):
    def run(self, jobs: Sequence[Job], tracker: Tracker | None = None) -> Iterator[JobResult]: ...


class LocalExecutor:
    """Jobs one after another in this process; each result is yielded as soon as its job finishes."""

    def run(self, jobs: Sequence[Job], tracker: Tracker | None = None) -> Iterator[JobResult]:
        for job in jobs:
            yield run_caught(job, tracker)


def worker_task(job: Job) -> JobResult:
    """What a Ray worker runs: the job, in the driver's working directory (relative paths in the job and in its
    reports mean what they meant there), its report detached from the model."""
    os.chdir(job.cwd)
    return run_caught(job, None, finish=lambda r: r if r.report is None else replace(r, report=detach(r.report)))


def _retried(result: JobResult) -> JobResult:
    """Say in the report's provenance that its job was retried after its worker died."""
    if result.attempts < 2 or result.report is None:
        return result
    doc = dict(result.report.document)
    doc["provenance"] = doc["provenance"] | {
        "retried": f"attempt {result.attempts}: the worker running attempt {result.attempts - 1} died"
    }
    return replace(result, report=replace(result.report, document=doc))


class RayExecutor:
    """Each job a Ray task. ``task`` is what a worker runs (tests swap in one whose worker dies)."""

    def __init__(self, address: str | None = None, task: Callable[[Job], JobResult] = worker_task) -> None:
        self.address = address
        self.task = task

    def _connect(self) -> bool:
        """Join the cluster (or the Ray this process already started); True when this call started Ray."""
        try:
            import ray
        except ImportError:
            raise CircuitcheckError(RAY_MISSING) from None
        if ray.is_initialized():
            return False
        try:
            if self.address is not None:
                ray.init(address=self.address, log_to_driver=False, logging_level=logging.WARNING)
            else:
                ray.init(num_cpus=os.cpu_count() or 1, include_dashboard=False, log_to_driver=False,
                         logging_level=logging.WARNING)
        except (ConnectionError, RuntimeError, ValueError) as err:
            where = self.address or "a local Ray"
            raise CircuitcheckError(
                f"cannot start or join Ray at {where}: {err}\n  fix: check --ray-address (host:port of a running "
                "cluster's head, or 'auto'), or leave it out to start a local Ray"
            ) from None
        return True

    def run(self, jobs: Sequence[Job], tracker: Tracker | None = None) -> Iterator[JobResult]:
        if not jobs:
            return
        started = self._connect()
        import ray

        try:
            yield from self._submit(ray, list(jobs), tracker)
        finally:
            if started:
                ray.shutdown()

    def _submit(self, ray: Any, jobs: list[Job], tracker: Tracker | None) -> Iterator[JobResult]:
        import torch

        attempts = ray.remote(num_cpus=0)(_Attempts).remote()
        task = self.task
        # Ray gives each task one thread (OMP_NUM_THREADS=1); a CPU reduction split over another number of threads
        # rounds differently, so each worker uses this process's count and the results match --executor local.
        threads = torch.get_num_threads()

        def counted(index: int, job: Job, log: Any) -> JobResult:
            attempt = ray.get(log.start.remote(index))
            torch.set_num_threads(threads)
            return replace(task(job), attempts=attempt)

        remote = ray.remote(counted)
        refs = [
            remote.options(max_retries=1, retry_exceptions=False, num_cpus=1,
                           num_gpus=1 if job.load.device.startswith("cuda") else 0).remote(i, job, attempts)
            for i, job in enumerate(jobs)
        ]
        steps = tracker or Tracker(0, enabled=False)
        for job, ref in zip(jobs, refs, strict=True):  # one step per job, in job order, as the results are
            with steps.step(f"{job.label} (on Ray)"):
                result = self._result(ray, job, ref)
            yield _retried(result)

    @staticmethod
    def _result(ray: Any, job: Job, ref: Any) -> JobResult:
        from ray.exceptions import (
            NodeDiedError,
            ObjectLostError,
            OutOfMemoryError,
            RayError,
            RayTaskError,
            WorkerCrashedError,
        )

        try:
            result: JobResult = ray.get(ref)
        except RayTaskError as err:  # the job raised something that is not bad input: a bug, on the worker
            cause = err.cause if isinstance(err.cause, BaseException) else err
            return JobResult(job, error=f"{job.label}: internal error on a Ray worker: {type(cause).__name__}: "
                                        f"{cause}; rerun with --executor local --debug for the traceback")
        except (WorkerCrashedError, NodeDiedError, OutOfMemoryError, ObjectLostError) as err:
            return JobResult(job, error=f"{job.label}: the Ray worker died (retried once): {_first_line(err)}")
        except RayError as err:  # Ray itself failed: the result could not be sent back or read here
            return JobResult(job, error=f"{job.label}: Ray could not return the job's result: {_first_line(err)}")
        return result


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


class _Attempts:
    """A Ray actor counting each job's attempts: a retried task runs again with the same arguments and no
    other way to know it is a retry."""

    def __init__(self) -> None:
        self.seen: dict[int, int] = {}

    def start(self, index: int) -> int:
        self.seen[index] = self.seen.get(index, 0) + 1
        return self.seen[index]


def executor_for(name: str, address: str | None = None) -> Executor:
    """The executor ``--executor name`` (``--ray-address`` only means something for ``ray``)."""
    if name == "local":
        if address is not None:
            raise CircuitcheckError("--ray-address needs --executor ray\n  fix: add --executor ray, or drop it")
        return LocalExecutor()
    if name == "ray":
        return RayExecutor(address)
    raise CircuitcheckError(f"unknown executor {name!r}\n  fix: use one of {', '.join(EXECUTORS)}")

