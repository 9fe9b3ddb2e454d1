"""Executors: the same jobs through ``--executor local`` and ``--executor ray`` write byte-identical reports
(apart from time and timing fields); a job that fails on a worker is that job's error, the others are kept;
a worker that dies mid-job is retried once and the report says so.

The Ray tests share one local Ray (two CPUs), started once for this module."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from circuitcheck.api import check_files, compare
from circuitcheck.cli import main
from circuitcheck.errors import CircuitcheckError
from circuitcheck.jobs.executors import LocalExecutor, RayExecutor, executor_for, worker_task
from circuitcheck.jobs.job import Job, JobResult, RunOptions
from tests.conftest import REPO, two_claim_file

FIRST = two_claim_file("first")

SECOND = """
version: 1
name: second
model: MODEL
dataset: {kind: trigram, n_seqs: 40, seed: 5, density: 0.05}
positions:
  Y: {role: Y}
claims:
  - id: mlp-rung
    statement: With the MLP mean-ablated the model completes fewer trigrams.
    kind: replacement
    replace: [{component: mlp0, with: mean}]
    positions: Y
    metric: accuracy
    threshold: {at_most: 0.95}
"""


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray", reason="Ray is not installed: pip install 'circuitcheck[ray]' to test it")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("executors")
    (folder / "first.yaml").write_text(FIRST.lstrip("\n"))
    (folder / "second.yaml").write_text(SECOND.lstrip("\n").replace("MODEL", "trigram"))
    broken = folder / "broken"
    shutil.copytree(REPO / "models" / "trigram", broken)
    (broken / "model.safetensors").write_bytes(b"not a safetensors file")
    (folder / "broken.yaml").write_text(SECOND.lstrip("\n").replace("MODEL", "./broken").replace("second", "broken"))
    return [folder / "first.yaml", folder / "second.yaml", folder / "broken.yaml"]


def _normalized(doc: dict) -> dict:
    """``doc`` with the fields that differ between two runs of the same job set to fixed values: when it ran and
    how long it took (a comparison's per-variant run documents too)."""
    doc = json.loads(json.dumps(doc))
    for run in [doc, *(r for r in doc.get("runs", {}).values() if r is not None)]:
        if "provenance" in run:
            run["provenance"]["time"] = "T"
        if "timing" in run:
            run["timing"] = {}
        for claim in run.get("claims", []):
            if "seconds" in claim:
                claim["seconds"] = 0.0
    return doc


def _written(report, folder: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, bytes]:
    import circuitcheck.report.render as render

    monkeypatch.setattr(render, "new_run_id", lambda: "fixed")
    paths = replace(report, document=_normalized(report.document)).write(folder)
    return {Path(p).name: Path(p).read_bytes() for p in paths}


def test_ray_reports_are_byte_identical_to_local(local_ray, files, tmp_path, monkeypatch):
    good = files[:2]
    local = list(check_files(good, executor="local"))
    remote = list(check_files(good, executor="ray"))
    assert [r.error for r in local + remote] == [None] * 4
    for mine, theirs in zip(local, remote, strict=True):
        assert mine.report is not None and theirs.report is not None
        assert theirs.report.result.plan is None  # the model stayed on the worker
        here = _written(mine.report, tmp_path / "local" / mine.report.name, monkeypatch)
        there = _written(theirs.report, tmp_path / "ray" / theirs.report.name, monkeypatch)
        assert here.keys() == there.keys() == {f"{mine.report.name}.{e}" for e in ("md", "json", "html")}
        for name in here:
            assert here[name] == there[name], name
        assert theirs.report.exit_code == mine.report.exit_code
    assert b"head 0.0: mean over 60 sequences" in (tmp_path / "ray" / "first" / "first.html").read_bytes()


def test_ray_compare_is_byte_identical_to_local(local_ray, files, tmp_path, monkeypatch):
    models = ["trigram", "trigram-attn-only"]
    local = compare(files[1], models)
    remote = compare(files[1], models, executor="ray")
    assert remote.comparison.failed == {} and local.comparison.failed == {}
    here = _written(local, tmp_path / "local", monkeypatch)
    there = _written(remote, tmp_path / "ray", monkeypatch)
    assert here.keys() == {"second-compare.md", "second-compare.json", "second-compare.html"}
    for name in here:
        assert here[name] == there[name], name


def test_a_failing_job_is_its_error_and_the_others_are_kept(local_ray, files, tmp_path, capsys):
    code = main(["run", str(files[0]), str(files[2]), "--executor", "ray", "--report-dir", str(tmp_path),
                 "--quiet"])
    captured = capsys.readouterr()
    assert code == 2
    assert str(files[2]) in captured.err or "broken" in captured.err
    assert (tmp_path / "first.json").exists() and not (tmp_path / "broken.json").exists()
    assert "reports:" in captured.out

    def raises(job: Job) -> JobResult:
        raise RuntimeError("a bug on the worker")

    results = list(RayExecutor(task=raises).run([Job(files[0], None, RunOptions(4096), name="trigram")]))
    assert results[0].report is None
    assert results[0].error is not None
    assert results[0].error.startswith(f"{files[0]} on trigram: internal error on a Ray worker: RuntimeError")


def test_a_worker_killed_mid_job_is_retried_once_and_the_report_says_so(local_ray, files, tmp_path):
    marker = tmp_path / "died-once"

    def dies_once(job: Job) -> JobResult:
        if not marker.exists():
            marker.write_text("attempt 1 died here")
            os._exit(1)  # the worker process dies mid-job, as an OOM kill would
        return worker_task(job)

    (ran,) = RayExecutor(task=dies_once).run([Job(files[1], None, RunOptions(4096))])
    assert marker.exists()
    assert ran.error is None and ran.report is not None and ran.attempts == 2
    assert ran.report.document["provenance"]["retried"] == "attempt 2: the worker running attempt 1 died"
    assert "| retried |" in (Path(ran.report.write(tmp_path / "out")[0])).read_text()

    def always_dies(job: Job) -> JobResult:
        os._exit(1)

    (lost,) = RayExecutor(task=always_dies).run([Job(files[1], "trigram", RunOptions(4096))])
    assert lost.report is None
    assert lost.error is not None
    assert lost.error.startswith(f"{files[1]} on trigram: the Ray worker died (retried once)")


def test_the_local_executor_never_imports_ray(tmp_path):
    import subprocess
    import sys

    script = (  # a job that fails at once goes the whole local path without a model to load
        "import sys\n"
        "from circuitcheck.api import check_files\n"
        f"(r,) = check_files([{str(tmp_path / 'missing.yaml')!r}])\n"
        "assert r.report is None and 'missing.yaml' in r.error\n"
        "print('ray' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "False"
    assert isinstance(executor_for("local"), LocalExecutor)


def test_bad_executor_options_are_clear_errors():
    with pytest.raises(CircuitcheckError, match="--ray-address needs --executor ray"):
        executor_for("local", "127.0.0.1:6379")
    with pytest.raises(CircuitcheckError, match="unknown executor 'dask'"):
        executor_for("dask")


def test_the_ray_executor_without_ray_says_how_to_install_it(monkeypatch, files):
    import sys

    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` meets where Ray is not installed
    missing = r"needs Ray, which is not installed\n  fix: pip install 'circuitcheck\[ray\]'"
    with pytest.raises(CircuitcheckError, match=missing):
        list(RayExecutor().run([Job(files[1], None, RunOptions(4096))]))


def test_ray_workers_use_this_processs_torch_threads(local_ray, files):
    # Ray gives a task one thread; float32 reductions split over another count round differently (caesar.yaml's
    # direct-logit details moved by up to 5e-7 before workers took the driver's count), so reports would not match.
    import torch

    def threads(job: Job) -> JobResult:
        import torch

        return JobResult(job, error=f"threads={torch.get_num_threads()}")  # the error field carries the reading

    (seen,) = RayExecutor(task=threads).run([Job(files[1], None, RunOptions(4096))])
    assert seen.error == f"threads={torch.get_num_threads()}"
