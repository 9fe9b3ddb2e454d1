"""The same job set through the local executor and through a local Ray (2 workers): wall times, the Ray overhead
per job and whether the results agree.

    python benchmarks/scale.py            # the suite's 7 files x 5 (35 jobs: >= 60 s locally on 2 cores)
    python benchmarks/scale.py --quick    # the suite's 7 files once (<= 3 minutes on 2 cores)

The job set is ``hypotheses/*.yaml``, each on its own model, repeated ``--repeat`` times. Both executors run it
in this process's driver; Ray's start-up is timed apart from the run. Definitions (BENCHMARKS.md explains them):

- ``ray_job_seconds``: the sum of each job's wall time inside its Ray worker (compile, run, judge, detach);
- ``ray_overhead_per_job_ms``: worker slots (``--workers`` of them) left idle from submission until the last job
  started, per job: scheduling, sending jobs and results, the workers' first import of circuitcheck and torch. It
  leaves out ``ray_tail_idle_s``: slots idle after the last job started, while the others finish (how unevenly the
  jobs split, which a longer job list evens out, not a cost of Ray);
- ``ray_overhead_fraction``: that overhead over ``ray_job_seconds``;
- ``identical``: every report's JSON document equal to the local one, apart from time and timing fields.

The last line printed is a JSON summary.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
WORKERS = 2


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="the suite once (7 jobs): <= 3 minutes on 2 cores")
    p.add_argument("--repeat", type=int, default=None, help="times the suite is repeated (default 5; --quick: 1)")
    p.add_argument("--workers", type=int, default=WORKERS, help=f"CPUs of the local Ray (default {WORKERS})")
    return p.parse_args(argv)


def normalized(doc: dict[str, Any]) -> dict[str, Any]:
    """A report's document without what differs between two runs of one job: when it ran and how long it took."""
    doc = json.loads(json.dumps(doc))
    doc["provenance"].pop("time", None)
    doc.pop("timing", None)
    for claim in doc["claims"]:
        claim.pop("seconds", None)
    return doc


def run_set(files: list[Path], executor: str) -> tuple[float, list[Any]]:
    from circuitcheck.api import check_files

    start = time.perf_counter()
    results = list(check_files(files, executor=executor))
    return time.perf_counter() - start, results


def timed_task(job: Any) -> Any:
    """A Ray job that notes which worker ran it and when, in its report's timing (left out of the comparison)."""
    from circuitcheck.jobs.executors import worker_task

    start = time.time()
    result = worker_task(job)
    if result.report is not None:
        result.report.document["timing"] |= {"worker": os.getpid(), "worker_start": start, "worker_end": time.time()}
    return result


def run_on_ray(files: list[Path]) -> tuple[float, float, list[Any]]:
    """(wall seconds, submission time, results) of the job set on the running Ray."""
    from circuitcheck.jobs.executors import RayExecutor
    from circuitcheck.jobs.job import Job, RunOptions
    from circuitcheck.run.engine import DEFAULT_MAX_ROWS

    jobs = [Job(f, None, RunOptions(DEFAULT_MAX_ROWS)) for f in files]
    submitted = time.time()
    start = time.perf_counter()
    results = list(RayExecutor(task=timed_task).run(jobs))
    return time.perf_counter() - start, submitted, results


def overhead(results: list[Any], submitted: float, workers: int) -> tuple[float, float]:
    """(Ray overhead seconds, tail idle seconds): the worker slots left idle while jobs were still waiting to start,
    and those idle after the last job started (see the module's docstring). From the jobs' start and end times in
    their workers: Ray may run a job in any process of its pool, so slots are counted, not processes."""
    spans = [(r.report.document["timing"]["worker_start"], r.report.document["timing"]["worker_end"]) for r in results]
    last_start = max(start for start, _ in spans)
    events = sorted([(submitted, 0), *((s, +1) for s, _ in spans), *((e, -1) for _, e in spans)])
    idle_waiting = idle_tail = 0.0
    busy, now = 0, submitted
    for when, step in events:
        idle = max(workers - busy, 0) * (when - now)
        if when <= last_start:
            idle_waiting += idle
        else:
            idle_tail += max(workers - busy, 0) * (when - max(now, last_start))
            idle_waiting += max(workers - busy, 0) * max(last_start - now, 0.0)
        busy, now = busy + step, when
    return idle_waiting, idle_tail


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    repeat = args.repeat if args.repeat is not None else (1 if args.quick else 5)
    os.chdir(REPO)
    suite = sorted(Path("hypotheses").glob("*.yaml"))
    files = suite * repeat
    print(f"{len(files)} jobs: {len(suite)} suite files x {repeat}", file=sys.stderr)

    import torch

    torch.set_num_threads(args.workers)  # the local run may use as many cores as the Ray workers together
    local_s, local = run_set(files, "local")
    print(f"local: {local_s:.1f} s", file=sys.stderr)

    import ray

    t0 = time.perf_counter()
    ray.init(num_cpus=args.workers, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    start_s = time.perf_counter() - t0
    try:
        ray_s, submitted, remote = run_on_ray(files)
    finally:
        ray.shutdown()
    print(f"ray: start {start_s:.1f} s, run {ray_s:.1f} s", file=sys.stderr)

    errors = [r.error for r in local + remote if r.error is not None]
    differing = sorted({
        str(a.job.path) for a, b in zip(local, remote, strict=True)
        if a.report is None or b.report is None or normalized(a.report.document) != normalized(b.report.document)
    })
    identical = not errors and not differing
    job_s = sum(r.seconds for r in remote)
    spent, tail = overhead(remote, submitted, args.workers) if not errors else (float("nan"), float("nan"))
    summary = {
        "jobs": len(files),
        "workers": args.workers,
        "local_wall_s": round(local_s, 2),
        "ray_start_s": round(start_s, 2),
        "ray_wall_s": round(ray_s, 2),
        "ray_job_seconds": round(job_s, 2),
        "ray_overhead_per_job_ms": round(1000 * spent / len(files), 1),
        "ray_overhead_fraction": round(spent / job_s, 4) if job_s > 0 else None,
        "ray_tail_idle_s": round(tail, 2),
        "speedup": round(local_s / ray_s, 3),
        "identical": identical,
        "differing": differing,
        "errors": errors,
        "retried": sum(r.attempts > 1 for r in remote),
    }
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
