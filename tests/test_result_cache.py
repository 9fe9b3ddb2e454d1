"""The result cache (``--cache``): a (file, model) pair whose inputs are unchanged reuses its stored report,
anything else reruns, the report says which, and a cache entry cannot run code when it is read."""

from __future__ import annotations

import base64
import io
import json
import os
import pickle
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

import circuitcheck.jobs.job as job_module
from circuitcheck.api import check
from circuitcheck.cli import main
from circuitcheck.jobs.cache import ResultCache, reused_from_cache
from tests.conftest import REPO, two_claim_file

CACHED = two_claim_file("cached")


@pytest.fixture
def cached_file(tmp_path: Path) -> Path:
    path = tmp_path / "cached.yaml"
    path.write_text(CACHED.lstrip("\n"))
    return path


@pytest.fixture
def runs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The plans that really ran (a reused result runs none)."""
    ran: list[str] = []
    real = job_module.run_plan

    def counting(plan, **options):
        ran.append(plan.name)
        return real(plan, **options)

    monkeypatch.setattr(job_module, "run_plan", counting)
    return ran


def _without(doc: dict, *fields: str) -> dict:
    doc = json.loads(json.dumps(doc))
    for name in fields:
        doc["provenance"].pop(name, None)
    return doc


def test_an_unchanged_pair_is_reused_and_writes_the_same_reports(cached_file, tmp_path, runs, monkeypatch):
    cache = tmp_path / "cache"
    first = check(cached_file, cache=cache)
    second = check(cached_file, cache=cache)
    assert runs == ["cached"]  # the second call ran no forward pass
    assert not reused_from_cache(first.document) and reused_from_cache(second.document)
    assert first.document["provenance"]["cache"]["key"] == second.document["provenance"]["cache"]["key"]
    assert second.claims.keys() == first.claims.keys()
    assert [v.verdict for v in second.claims.values()] == [v.verdict for v in first.claims.values()]
    assert second.exit_code == first.exit_code
    assert _without(second.document, "cache") == _without(first.document, "cache")

    # The reused report renders what the fresh one did, heatmaps and circuits included (the drawings were stored).
    import circuitcheck.report.render as render

    monkeypatch.setattr(render, "new_run_id", lambda: "fixed")
    fresh_dir, reused_dir = tmp_path / "fresh", tmp_path / "reused"
    replace(first, document=_without(first.document, "cache")).write(fresh_dir)
    replace(second, document=_without(second.document, "cache")).write(reused_dir)
    for name in ("cached.md", "cached.json", "cached.html"):
        assert (reused_dir / name).read_bytes() == (fresh_dir / name).read_bytes(), name
    assert "head 0.0: mean over 60 sequences" in (reused_dir / "cached.html").read_text()  # a stored heatmap


def test_changing_the_file_or_the_checkpoint_reruns_only_that_pair(cached_file, tmp_path, runs):
    cache = tmp_path / "cache"
    model = tmp_path / "trigram-copy"
    shutil.copytree(REPO / "models" / "trigram", model)
    check(cached_file, str(model), cache=cache)
    check(cached_file, str(model), cache=cache)
    assert len(runs) == 1

    cached_file.write_text(cached_file.read_text() + "# a comment changes the file's bytes\n")
    assert not reused_from_cache(check(cached_file, str(model), cache=cache).document)
    assert len(runs) == 2

    weights = model / "model.safetensors"
    from safetensors.torch import load_file, save_file

    tensors = load_file(weights)
    name = sorted(tensors)[0]
    tensors[name] = tensors[name].clone()
    tensors[name].view(-1)[0] += 1e-3  # one weight, barely: a different checkpoint all the same
    save_file(tensors, weights)
    assert not reused_from_cache(check(cached_file, str(model), cache=cache).document)
    assert len(runs) == 3
    assert reused_from_cache(check(cached_file, str(model), cache=cache).document)
    assert len(runs) == 3


def test_options_that_change_results_are_part_of_the_key(cached_file, tmp_path, runs):
    cache = tmp_path / "cache"
    check(cached_file, cache=cache)
    check(cached_file, cache=cache, resume=False)
    check(cached_file, cache=cache, max_rows=64)
    assert len(runs) == 3
    assert len(list(cache.glob("*.json"))) == 3


def test_a_tampered_entry_cannot_run_code_and_is_a_miss(cached_file, tmp_path, runs):
    cache = tmp_path / "cache"
    check(cached_file, cache=cache)
    (entry,) = cache.glob("*.json")
    stored = json.loads(entry.read_text())
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    stored["objects"] = base64.b64encode(pickle.dumps(Payload())).decode()
    entry.write_text(json.dumps(stored))
    again = check(cached_file, cache=cache)
    assert not marker.exists()
    assert not reused_from_cache(again.document) and len(runs) == 2  # reran, and stored a good entry again
    assert reused_from_cache(check(cached_file, cache=cache).document)


def test_the_cli_says_which_results_were_reused(cached_file, tmp_path, capsys):
    args = ["run", str(cached_file), "--report-dir", str(tmp_path / "r"), "--quiet", "--cache", str(tmp_path / "c")]
    assert main(args) == 0
    assert "reused from cache" not in capsys.readouterr().out
    assert main(args) == 0
    assert "reused from cache" in capsys.readouterr().out
    markdown = (tmp_path / "r" / "cached.md").read_text()
    assert '| cache | `{"reused": true' in markdown
    assert json.loads((tmp_path / "r" / "cached.json").read_text())["provenance"]["cache"]["reused"] is True


def test_a_cache_key_is_stable_and_names_its_inputs(cached_file, tmp_path):
    from circuitcheck.jobs.job import RunOptions
    from circuitcheck.plan.compile import compile_file

    plan = compile_file(cached_file)
    cache = ResultCache(tmp_path)
    key = cache.key(plan, RunOptions(4096))
    assert key == cache.key(compile_file(cached_file), RunOptions(4096))
    assert key != cache.key(plan, RunOptions(4096, controls=True))
    assert len(key) == 64 and int(key, 16) >= 0


def test_an_entry_may_build_records_only_not_circuitcheck_classes_with_behaviour(tmp_path):
    # a class of our own whose constructor acts (the cache makes folders; an executor could start Ray) is refused
    from circuitcheck.jobs.cache import ResultCache, _OwnClassesOnly

    class Payload:
        def __reduce__(self):
            return (ResultCache, (tmp_path / "made",))

    with pytest.raises(pickle.UnpicklingError, match="circuitcheck's classes only"):
        _OwnClassesOnly(io.BytesIO(pickle.dumps(Payload()))).load()
