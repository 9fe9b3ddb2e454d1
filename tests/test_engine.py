"""Engine invariants on a random 2-layer, 3-head model (no checkpoint needed)."""

from __future__ import annotations

import pytest
import torch

from circuitcheck.errors import SelfCheckError
from circuitcheck.plan.components import HookSite, complement, model_components, resolve_components
from circuitcheck.plan.interventions import CLEAN, HookEdit, Variant
from circuitcheck.run.engine import (
    EngineInputs,
    Replacements,
    assert_fired,
    clean_run,
    counted_hooks,
    derangement,
    run_naive,
    run_variants,
)
from tests.conftest import TINY_CONFIG

N_SEQS, SEQ = 9, TINY_CONFIG["n_ctx"]


@pytest.fixture(scope="module")
def setup(tiny_model):
    gen = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, TINY_CONFIG["d_vocab"], (N_SEQS, SEQ), generator=gen)
    corrupted = torch.randint(0, TINY_CONFIG["d_vocab"], (N_SEQS, SEQ), generator=gen)
    late = torch.zeros(N_SEQS, SEQ, dtype=torch.bool)
    late[:, SEQ // 2 :] = True
    masks = {"all": torch.ones(N_SEQS, SEQ, dtype=torch.bool), "late": late}
    data = EngineInputs({CLEAN: tokens, "corrupted": corrupted}, masks)
    sites = resolve_components(tiny_model, model_components(tiny_model), ())
    hooks = {s.hook for s in sites}
    clean_logits, cache = clean_run(tiny_model, tokens, hooks, max_rows=4)
    return data, Replacements(cache), clean_logits, sites


def test_components_cover_every_head_and_mlp(tiny_model):
    names = [str(c) for c in model_components(tiny_model)]
    assert names == ["embed", "pos_embed", "0.0", "0.1", "0.2", "mlp0", "1.0", "1.1", "1.2", "mlp1"]


def test_clean_run_matches_plain_forward(tiny_model, setup):
    data, _, clean_logits, _ = setup
    with torch.no_grad():
        assert torch.equal(clean_logits, tiny_model(data.inputs[CLEAN]))


def test_identity_patch_reproduces_clean_logits(tiny_model, setup):
    data, repl, clean_logits, sites = setup
    identity = Variant(edits=tuple(HookEdit(s, "all", "clean") for s in sites))
    (out,) = run_variants(tiny_model, [identity], data, repl)
    assert torch.allclose(out, clean_logits, atol=1e-6)


def test_ablating_nothing_equals_the_model(tiny_model, setup):
    data, repl, clean_logits, sites = setup
    keep_all = Variant(edits=tuple(HookEdit(s, "all", "zero") for s in complement(tiny_model, sites)))
    (out,) = run_variants(tiny_model, [keep_all], data, repl)
    assert torch.equal(out, clean_logits)


def test_empty_circuit_equals_fully_ablated_model(tiny_model, setup):
    data, repl, _, sites = setup
    everything = Variant(edits=tuple(HookEdit(s, "all", "mean") for s in sites))
    keep_nothing = Variant(edits=tuple(HookEdit(s, "all", "mean") for s in complement(tiny_model, [])))
    a, b = run_variants(tiny_model, [everything, keep_nothing], data, repl)
    assert torch.equal(a, b)
    # With every component mean-ablated, the output no longer depends on the input.
    assert torch.allclose(a, a[:1].expand_as(a), atol=1e-5)


def random_variants(sites: list[HookSite], seed: int, n: int) -> list[Variant]:
    gen = torch.Generator().manual_seed(seed)
    sources = ["zero", "mean", "resample", "clean"]
    variants = []
    for _ in range(n):
        k = int(torch.randint(1, 4, (1,), generator=gen))
        picks = torch.randperm(len(sites), generator=gen)[:k].tolist()
        edits = []
        for i in picks:
            src = sources[int(torch.randint(0, 4, (1,), generator=gen))]
            pos = ["all", "late"][int(torch.randint(0, 2, (1,), generator=gen))]
            edits.append(HookEdit(sites[i], pos, src, seed=7 if src == "resample" else None))  # type: ignore[arg-type]
        inp = [CLEAN, "corrupted"][int(torch.randint(0, 2, (1,), generator=gen))]
        variants.append(Variant(input=inp, edits=tuple(edits)))
    return variants


@pytest.mark.parametrize("max_rows", [1000, 7, 2])
def test_batched_engine_equals_naive_loop(tiny_model, setup, max_rows):
    data, repl, _, sites = setup
    variants = random_variants(sites, seed=max_rows, n=12)
    batched = run_variants(tiny_model, variants, data, repl, max_rows=max_rows)
    for variant, got in zip(variants, batched, strict=True):
        want = run_naive(tiny_model, variant, data, repl)
        assert torch.allclose(got, want, atol=1e-5), variant.describe()


@pytest.mark.parametrize("max_rows", [1000, 5])
def test_a_whole_attention_pattern_edited_at_some_queries_equals_the_naive_loop(tiny_model, setup, max_rows):
    """A raw ``hook_pattern`` (every head; heads before positions) patched at some query positions: the position
    mask must select queries, not heads (it once broadcast against the head axis)."""
    data, _, _, _ = setup
    hook = "blocks.1.attn.hook_pattern"
    _, cache = clean_run(tiny_model, data.inputs[CLEAN], {hook}, max_rows=4)
    repl = Replacements(cache)
    variants = [
        Variant(input="corrupted", edits=(HookEdit(HookSite(hook), "late", "clean"),)),
        Variant(edits=(HookEdit(HookSite(hook), "late", "resample", seed=2),)),
        Variant(edits=(HookEdit(HookSite(hook, 1), "late", "mean"),)),
    ]
    batched = run_variants(tiny_model, variants, data, repl, max_rows=max_rows, resume=False)
    for variant, got in zip(variants, batched, strict=True):
        want = run_naive(tiny_model, variant, data, repl)
        assert torch.allclose(got, want, atol=1e-5), variant.describe()
    early = data.masks["late"].logical_not()
    clean = tiny_model(data.inputs[CLEAN]).detach()
    assert torch.allclose(batched[1][early], clean[early], atol=1e-6), "queries before 'late' keep their pattern"


def test_zero_ablating_a_head_equals_zeroing_its_output_weights(tiny_model, setup):
    data, repl, _, _ = setup
    site = HookSite("blocks.1.attn.hook_z", 2)
    (ablated,) = run_variants(tiny_model, [Variant(edits=(HookEdit(site, "all", "zero"),))], data, repl)
    o = tiny_model.blocks[1].attn.o
    weight = o.weight.detach().clone()
    d_head = TINY_CONFIG["d_head"]
    try:
        with torch.no_grad():
            o.weight[:, 2 * d_head : 3 * d_head] = 0.0
            reference = tiny_model(data.inputs[CLEAN])
    finally:
        with torch.no_grad():
            o.weight.copy_(weight)
    assert torch.allclose(ablated, reference, atol=1e-5)
    with torch.no_grad():
        assert not torch.allclose(ablated, tiny_model(data.inputs[CLEAN]), atol=1e-3)


def test_edits_apply_only_at_selected_positions(tiny_model, setup):
    data, repl, clean_logits, _ = setup
    site = HookSite("blocks.0.hook_mlp_out")
    (out,) = run_variants(tiny_model, [Variant(edits=(HookEdit(site, "late", "zero"),))], data, repl)
    early = SEQ // 2
    assert torch.equal(out[:, :early], clean_logits[:, :early])  # causal: earlier positions untouched
    assert not torch.allclose(out[:, early:], clean_logits[:, early:])


def test_a_hook_that_never_fires_is_an_error(tiny_model, setup):
    data, _, _, _ = setup
    with counted_hooks(tiny_model, {"blocks.0.hook_mlp_out": lambda a: a}) as calls:
        tiny_model(data.inputs[CLEAN][:1])
    assert_fired(calls, ["blocks.0.hook_mlp_out"], "probe")
    with pytest.raises(SelfCheckError, match=r"hook\(s\) \['ln_final.hook_scale'\] never fired"):
        assert_fired(calls, ["ln_final.hook_scale"], "probe")


def test_hooks_are_removed_after_the_block(tiny_model, setup):
    data, _, clean_logits, _ = setup
    with counted_hooks(tiny_model, {"blocks.0.hook_mlp_out": torch.zeros_like}):
        pass
    with torch.no_grad():
        assert torch.equal(tiny_model(data.inputs[CLEAN]), clean_logits)


@pytest.mark.parametrize("n", [2, 3, 10, 101])
def test_derangement_has_no_fixed_point(n):
    perm = derangement(n, seed=n)
    assert sorted(perm.tolist()) == list(range(n))
    assert not (perm == torch.arange(n)).any()


def test_non_finite_activations_are_named_by_hook(tiny_model, setup):
    from circuitcheck.run.execute import first_nonfinite_hook

    data, _, _, _ = setup
    ln = tiny_model.blocks[1].ln2
    weight = ln.weight.detach().clone()
    try:
        with torch.no_grad():
            ln.weight[0] = float("nan")
        assert first_nonfinite_hook(tiny_model, data.inputs[CLEAN][:1]) == "blocks.1.ln2.hook_out"
    finally:
        with torch.no_grad():
            ln.weight.copy_(weight)
    assert first_nonfinite_hook(tiny_model, data.inputs[CLEAN][:1]) is None


def test_an_edit_that_writes_nan_is_an_error(tiny_model, setup):
    data, _, _, _ = setup
    cache = {"blocks.0.hook_mlp_out": torch.full((N_SEQS, SEQ, TINY_CONFIG["d_model"]), float("nan"))}
    edit = HookEdit(HookSite("blocks.0.hook_mlp_out"), "all", "clean")
    nan_at = r"non-finite values after the edit .* at hook 'blocks.0.hook_mlp_out', sequence 0"
    with pytest.raises(SelfCheckError, match=nan_at):
        run_variants(tiny_model, [Variant(edits=(edit,))], data, Replacements(cache))


def test_batched_linear_edits_equal_the_naive_loop(tiny_model, setup):
    data, _, _, sites = setup
    with torch.no_grad():
        _, full_cache = tiny_model.run_with_cache(data.inputs[CLEAN])
    repl = Replacements(dict(full_cache.items()), tiny_model, data.masks)
    lin = HookEdit(HookSite("blocks.1.hook_mlp_out"), "late", "linear", reads="blocks.1.hook_resid_mid", fit="all")
    variants = [Variant(edits=(lin,)), Variant(input="corrupted", edits=(lin, HookEdit(sites[2], "all", "zero")))]
    batched = run_variants(tiny_model, variants, data, repl, max_rows=5)
    for variant, got in zip(variants, batched, strict=True):
        assert torch.allclose(got, run_naive(tiny_model, variant, data, repl), atol=1e-5)


@pytest.fixture(scope="module")
def resumable(tiny_model, setup):
    """The same data with a clean cache that also holds the residual streams passes resume from."""
    from circuitcheck.run.engine import resume_hooks

    data, _, _, sites = setup
    hooks = {s.hook for s in sites} | resume_hooks(tiny_model)
    _, cache = clean_run(tiny_model, data.inputs[CLEAN], hooks, max_rows=100)
    return data, Replacements(cache), sites


@pytest.mark.parametrize("max_rows", [1000, 5])
def test_resumed_passes_equal_the_naive_loop(tiny_model, resumable, max_rows):
    data, repl, sites = resumable
    layer1 = [s for s in sites if s.hook.startswith("blocks.1.")]
    variants = [Variant(edits=(e,)) for v in random_variants(layer1, seed=3, n=8) for e in v.edits[:1]]
    variants += random_variants(sites, seed=4, n=6)  # some start at layer 0 or from other inputs
    batched = run_variants(tiny_model, variants, data, repl, max_rows=max_rows)
    for variant, got in zip(variants, batched, strict=True):
        torch.testing.assert_close(got, run_naive(tiny_model, variant, data, repl), atol=1e-5, rtol=0)


def test_layer1_edits_skip_layer0(tiny_model, resumable):
    from circuitcheck.run.resume import FROM_TOKENS, Start, StartPoint, start_point

    data, repl, _ = resumable
    variant = Variant(edits=(HookEdit(HookSite("blocks.1.hook_resid_pre"), "late", "mean"),))
    assert start_point(tiny_model, variant, repl.cache) == StartPoint(Start.LAYER, 1)
    # given a cache of its own input's unedited run, a variant on another input resumes from it
    on_corrupted = Variant(input="corrupted", edits=variant.edits)
    assert start_point(tiny_model, on_corrupted, repl.cache) == StartPoint(Start.LAYER, 1, input="corrupted")
    assert start_point(tiny_model, Variant(), repl.cache) == FROM_TOKENS, "an unedited variant: the stacking self-check"
    calls = []
    handle = tiny_model.blocks[0].register_forward_hook(lambda *a: calls.append(1))
    try:
        run_variants(tiny_model, [variant], data, repl)
        assert calls == []
        run_variants(tiny_model, [variant], data, repl, resume=False)
        assert calls, "without resume, layer 0 runs"
    finally:
        handle.remove()


def test_grouped_edits_of_one_variant_compose(tiny_model, resumable):
    data, repl, _ = resumable
    heads = [HookEdit(HookSite("blocks.0.attn.hook_z", h), pos, "zero") for h, pos in ((0, "all"), (2, "late"))]
    one = Variant(edits=tuple(heads))
    (got,) = run_variants(tiny_model, [one, Variant(edits=heads[:1])], data, repl)[:1]
    torch.testing.assert_close(got, run_naive(tiny_model, one, data, repl), atol=1e-5, rtol=0)


def test_no_pass_exceeds_max_rows(tiny_model, resumable):
    data, repl, sites = resumable
    variants = random_variants(sites, seed=9, n=7)
    sizes = []
    handle = tiny_model.blocks[1].register_forward_hook(lambda mod, args, out: sizes.append(args[0].shape[0]))
    try:
        got = run_variants(tiny_model, variants, data, repl, max_rows=3)
    finally:
        handle.remove()
    assert sizes and max(sizes) <= 3
    for variant, logits in zip(variants, got, strict=True):
        torch.testing.assert_close(logits, run_naive(tiny_model, variant, data, repl), atol=1e-5, rtol=0)
