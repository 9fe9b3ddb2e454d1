"""The streaming engine: passes reduced to the claims' reads give the same numbers as full logits,
self-checks still catch what they should, and a run keeps what its budget allows."""

from __future__ import annotations

import pytest
import torch

from circuitcheck.claims.ablation import AblationClaim
from circuitcheck.claims.activation_patching import ActivationPatchingClaim
from circuitcheck.claims.replacement import ReplacementClaim
from circuitcheck.errors import MemoryBudgetError
from circuitcheck.metrics import metrics
from circuitcheck.plan.components import resolve_components
from circuitcheck.plan.interventions import CLEAN, ClaimOutputs, HookEdit, Variant
from circuitcheck.run.clean_pass import CleanCaptures, clean_pass
from circuitcheck.run.engine import EngineInputs, Replacements, clean_run, run_variants
from circuitcheck.run.execute import rows_per_call, run_file
from circuitcheck.run.readouts import Readouts, Want, input_target
from circuitcheck.run.resume import resume_hooks
from circuitcheck.spec.components import parse_component
from circuitcheck.testing import make_plan
from tests.conftest import TINY_CONFIG

N, SEQ = 10, TINY_CONFIG["n_ctx"]
METRICS = ("accuracy", "logprob", "kl", "top1_agreement", "logit_diff")


@pytest.fixture(scope="module")
def data(tiny_model):
    gen = torch.Generator().manual_seed(4)
    tokens = torch.randint(0, TINY_CONFIG["d_vocab"], (N, SEQ), generator=gen)
    corrupted = torch.randint(0, TINY_CONFIG["d_vocab"], (N, SEQ), generator=gen)
    few = torch.zeros(N, SEQ, dtype=torch.bool)
    few[:, [3, 7]] = True
    scored = torch.rand(N, SEQ, generator=gen) < 0.6
    scored[:, -1] = False
    next_token = torch.cat([tokens[:, 1:], torch.full((N, 1), -1)], 1)
    return EngineInputs({CLEAN: tokens, "corrupted": corrupted}, {"all": torch.ones_like(few), "few": few}), \
        scored, next_token


def variants(tiny_model) -> list[Variant]:
    """Every way a pass can start: from the tokens, resumed at a layer, inside the last block one position
    at a time, and an unedited variant on another input (its cached logits)."""
    z0, z1, mlp0, embed = (resolve_components(tiny_model, [parse_component(c)], ())[0]
                           for c in ("0.1", "1.2", "mlp0", "embed"))
    return [
        Variant(edits=(HookEdit(embed, "all", "zero"),)),
        Variant(edits=(HookEdit(mlp0, "all", "mean"),)),
        Variant(edits=(HookEdit(z1, "few", "resample", seed=3),)),
        Variant(edits=(HookEdit(z1, "few", "mean"),)),
        Variant(input="corrupted", edits=(HookEdit(z0, "few", "clean"),)),
        Variant(input="corrupted"),
        Variant(),
    ]


@pytest.mark.parametrize("max_rows", [3, 64])
def test_reduced_values_equal_the_metrics_of_the_full_logits(tiny_model, data, max_rows):
    engine, scored, next_token = data
    runs = variants(tiny_model)
    capture = resume_hooks(tiny_model) | {e.site.hook for v in runs for e in v.edits}
    with torch.no_grad():
        clean, cache = clean_run(tiny_model, engine.inputs[CLEAN], capture, max_rows)
        full = run_variants(tiny_model, runs, engine, Replacements(cache), max_rows)
    wants = [Want(metrics.get(name), scored) for name in METRICS]
    sink = Readouts(next_token, {k: wants for k in [*range(len(runs)), input_target(CLEAN),
                                                   input_target("corrupted")]}, [], max_rows)
    with torch.no_grad():
        clean_run(tiny_model, engine.inputs[CLEAN], set(), max_rows, sink.input_chunks(CLEAN))
        _, cache2 = clean_run(tiny_model, engine.inputs[CLEAN], capture, max_rows)
        run_variants(tiny_model, runs, engine, Replacements(cache2), max_rows, sink=sink)
    for k, logits in enumerate([*full, clean]):
        target = k if k < len(runs) else input_target(CLEAN)
        for want in wants:
            expected = want.metric(logits[scored], next_token[scored], clean[scored])
            got = sink.values[(target, *want.key)]
            assert torch.equal(got, expected), (k, want.metric.name, float((got - expected).abs().max()))


def test_the_trackers_catch_what_the_self_checks_check():
    next_token = torch.zeros(4, 3, dtype=torch.long)
    sink = Readouts(next_token, {}, [], window=2)
    clean = torch.randn(4, 3, 5)
    sink.chunk(input_target(CLEAN), 0, clean)
    sink.compare_with_clean("same")
    sink.compare_with_clean("off")
    sink.check_constant("blank")
    sink.chunk("same", 0, clean.clone())
    sink.chunk("off", 0, clean + torch.tensor([0.0, 0.0, 0.0, 0.5])[:, None, None])
    sink.chunk("blank", 0, clean[:1].expand(2, 3, 5))
    sink.chunk("blank", 2, clean[2:])
    assert sink.against_clean == {"same": 0.0, "off": 0.0}, "row 3 lies outside the 2-sequence window"
    sink.chunk("off", 0, clean + 0.25)
    assert sink.against_clean["off"] == pytest.approx(0.25)
    assert sink.constant["blank"] > 0.1, "sequences 2 and 3 differ from sequence 0"
    assert sink.non_finite is None
    sink.position("late", 2, 1, torch.full((2, 5), float("nan")))
    assert sink.non_finite == ("late", 2, 1)


def test_a_read_the_plan_did_not_declare_is_refused_by_name():
    out = ClaimOutputs(batch=None, masks={}, inputs={}, captured={}, claim_id="c1")  # type: ignore[arg-type]
    with pytest.raises(KeyError, match="claim 'c1' reads accuracy of run 'ablated' at a mask its plan did not"):
        out.scores("ablated", metrics.get("accuracy"), torch.ones(1, 1, dtype=torch.bool))
    with pytest.raises(KeyError, match="needs_clean_logits=True"):
        _ = out.clean_logits


def claims_of_every_source():
    common = dict(statement="s", threshold={"at_least": 0.0}, positions="late")
    return [
        AblationClaim.model_validate(common | dict(id="mean", kind="ablation", components=["0.1", "mlp1"],
                                                   mode="necessity", effect="absolute_drop", method="mean",
                                                   metric="logprob")),
        AblationClaim.model_validate(common | dict(id="resample", kind="ablation", components=["1.0"],
                                                   mode="necessity", effect="absolute_drop", method="resample",
                                                   resample_seed=2, metric="accuracy")),
        AblationClaim.model_validate(common | dict(id="suff", kind="ablation", mode="sufficiency",
                                                   components=["1.1", "mlp1"], method="zero", metric="kl")),
        ActivationPatchingClaim.model_validate(common | dict(
            id="patch", kind="activation_patching", patch=["1.2"], patch_at="Y", metric="logprob",
            corruption={"positions": "Y", "scheme": "resample_tokens", "seed": 1})),
        ReplacementClaim.model_validate(common | dict(
            id="repl", kind="replacement", metric="logprob", replace=[{"component": "mlp0", "with": "mean"}])),
    ]


def test_a_dataset_longer_than_a_pass_gives_the_same_results(tiny_model):
    """More sequences than ``max_rows``: means summed chunk by chunk, the self-checks on the window only, and
    only what the claims read kept; the numbers match one pass over everything up to float32 summation order."""
    plan = make_plan(tiny_model, claims_of_every_source())
    whole = run_file(plan, max_rows=4096)
    chunked = run_file(plan, max_rows=5)
    assert whole.timings["rows_per_call"] == 4096 and chunked.timings["rows_per_call"] == 5
    names = {c.name for c in chunked.self_checks}
    assert {"identity_patch", "empty_circuit", "batched_noop"} <= names
    assert "over the first 5 sequences" in next(c.detail for c in chunked.self_checks if c.name == "identity_patch")
    for a, b in zip(whole.claims, chunked.claims, strict=True):
        assert b.measurement.estimate == pytest.approx(a.measurement.estimate, rel=1e-5, abs=1e-6), a.claim_id


def test_resume_caches_are_dropped_when_the_budget_is_short_and_required_caches_must_fit(tiny_model):
    plan = make_plan(tiny_model, claims_of_every_source())
    resumed = run_file(plan)
    required, extra = resumed.timings["cache_required_bytes"], resumed.timings["cache_resume_bytes"]
    assert required > 0 and extra > 0
    short = run_file(plan, memory_budget=int(required + extra // 2))
    assert resumed.timings["resumed"] == 1.0 and short.timings["resumed"] == 0.0
    for a, b in zip(resumed.claims, short.claims, strict=True):
        assert b.measurement.estimate == pytest.approx(a.measurement.estimate, rel=1e-5, abs=1e-6), a.claim_id
    with pytest.raises(MemoryBudgetError, match=r"exceed the memory budget of 0\.00 GiB; fix: raise --memory-budget"):
        run_file(plan, memory_budget=1000)


def test_clean_pass_keeps_a_window_and_streams_means(tiny_model, data):
    engine = data[0]
    tokens = engine.inputs[CLEAN]
    hook = "blocks.0.hook_mlp_out"
    got = clean_pass(tiny_model, tokens, CleanCaptures(set(), {hook}, {hook}), 3, 4, lambda f, x: None)
    _, cache = clean_run(tiny_model, tokens, {hook}, 100)
    assert torch.equal(got.window_acts[hook], cache[hook][:4])
    torch.testing.assert_close(got.means[hook], cache[hook].mean(0, keepdim=True), atol=1e-6, rtol=0)
    assert got.acts == {}


def test_rows_per_call_keeps_one_call_of_a_large_vocabulary_within_the_limit(tiny_model):
    plan = make_plan(tiny_model, claims_of_every_source()[:1])
    assert rows_per_call(plan, 4096) == 4096, "the tiny model's logits are small"
    plan.loaded.model.cfg.d_vocab, saved = 50257, plan.loaded.model.cfg.d_vocab
    try:
        rows = rows_per_call(plan, 4096)
    finally:
        plan.loaded.model.cfg.d_vocab = saved
    assert rows * SEQ * 50257 * 4 <= 256 * 2**20 < (rows + 1) * SEQ * 50257 * 4
