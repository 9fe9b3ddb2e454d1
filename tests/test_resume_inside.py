"""Passes that start inside the last block, at its cached ``hook_z``.

The tiny model has 2 layers, so edits after layer 1's attention start inside block 1;
every result is checked against the naive loop (one full forward pass per variant).
"""

from __future__ import annotations

import pytest
import torch

from circuitcheck.errors import SelfCheckError
from circuitcheck.plan.components import HookSite
from circuitcheck.plan.interventions import CLEAN, HookEdit, Variant
from circuitcheck.run.engine import (
    EngineInputs,
    Replacements,
    check_inside_start,
    clean_run,
    run_naive,
    run_variants,
)
from circuitcheck.run.resume import FROM_TOKENS, Start, StartPoint, resume_hooks, start_point, z_hook
from tests.conftest import TINY_CONFIG

N_SEQS, SEQ = 7, TINY_CONFIG["n_ctx"]
Z1 = "blocks.1.attn.hook_z"


@pytest.fixture(scope="module")
def data() -> EngineInputs:
    gen = torch.Generator().manual_seed(11)
    tokens = torch.randint(0, TINY_CONFIG["d_vocab"], (N_SEQS, SEQ), generator=gen)
    masks = {"all": torch.ones(N_SEQS, SEQ, dtype=torch.bool), "none": torch.zeros(N_SEQS, SEQ, dtype=torch.bool)}
    for j in range(SEQ):
        masks[f"p{j}"] = torch.zeros(N_SEQS, SEQ, dtype=torch.bool)
        masks[f"p{j}"][:, j] = True
    # A role-like selection: a different position in every sequence.
    masks["role"] = torch.nn.functional.one_hot(torch.randint(0, SEQ, (N_SEQS,), generator=gen), SEQ).bool()
    corrupted = torch.randint(0, TINY_CONFIG["d_vocab"], (N_SEQS, SEQ), generator=gen)
    return EngineInputs({CLEAN: tokens, "corrupted": corrupted}, masks)


@pytest.fixture(scope="module")
def cache(tiny_model, data) -> dict[str, torch.Tensor]:
    hooks = {"blocks.0.attn.hook_z", Z1, "blocks.1.hook_mlp_out", "blocks.1.hook_resid_mid"} | resume_hooks(tiny_model)
    return clean_run(tiny_model, data.inputs[CLEAN], hooks, max_rows=100)[1]


def edit(hook: str, positions: str, source: str = "resample", head: int | None = None) -> HookEdit:
    seed = 5 if source == "resample" else None
    return HookEdit(HookSite(hook, head), positions, source, seed=seed)  # type: ignore[arg-type]


def assert_naive(model, variants, data, repl, **kwargs) -> list[torch.Tensor]:
    got = run_variants(model, variants, data, repl, **kwargs)
    for variant, logits in zip(variants, got, strict=True):
        want = run_naive(model, variant, data, repl)
        torch.testing.assert_close(logits, want, atol=1e-5, rtol=0, msg=lambda m, v=variant: f"{v.describe()}: {m}")
    return got


def test_start_points(tiny_model, cache):
    def start(*edits: HookEdit, held: dict[str, torch.Tensor] = cache) -> StartPoint:
        return start_point(tiny_model, Variant(edits=edits), held)

    inside, layer1 = StartPoint(Start.INSIDE_LAST_BLOCK, 1), StartPoint(Start.LAYER, 1)
    assert start(edit(Z1, "all", head=0)) == inside
    assert start(edit("blocks.1.hook_mlp_out", "p3"), edit("blocks.1.hook_resid_mid", "all")) == inside
    assert start(edit("blocks.1.attn.hook_pattern", "all", "previous")) == layer1
    assert start(edit(Z1, "all", head=0), edit("blocks.1.hook_resid_pre", "all")) == layer1
    assert start(edit(Z1, "all", head=0), edit("blocks.0.attn.hook_z", "all", head=1)) == FROM_TOKENS
    assert start(edit("hook_embed", "p2", "zero"), edit("blocks.1.hook_mlp_out", "all")) == FROM_TOKENS
    assert start(edit("ln_final.hook_normalized", "p2", "zero")) == StartPoint(Start.LAYER, 2)
    without_z = {k: v for k, v in cache.items() if k != z_hook(1)}
    assert start(edit(Z1, "all", head=0), held=without_z) == layer1


def test_start_points_run_in_forward_order():
    """Cached logits first (no pass), then passes by how far into the model they start."""
    forward_order = [
        StartPoint(Start.CACHED, input=CLEAN),
        StartPoint(Start.CACHED, input="corrupted"),
        FROM_TOKENS,
        StartPoint(Start.LAYER, 1),
        StartPoint(Start.LAYER, 1, input="corrupted"),
        StartPoint(Start.INSIDE_LAST_BLOCK, 1),
        StartPoint(Start.LAYER, 2),
    ]
    assert sorted(reversed(forward_order), key=lambda p: p.run_order) == forward_order


def test_sweep_of_single_positions_equals_the_naive_loop(tiny_model, data, cache):
    variants = [Variant(edits=(edit(Z1, f"p{j}", head=h),)) for h in range(TINY_CONFIG["n_heads"]) for j in range(SEQ)]
    for max_rows in (4096, 5):
        assert_naive(tiny_model, variants, data, Replacements(cache), max_rows=max_rows)


def test_mixed_start_points_in_one_call_equal_the_naive_loop(tiny_model, data, cache):
    variants = [
        Variant(edits=(edit(Z1, "role", head=1),)),  # per-sequence positions
        Variant(edits=(edit(Z1, "p2", "mean", head=0), edit("blocks.1.hook_mlp_out", "p9", "zero"))),  # two positions
        Variant(edits=(edit(Z1, "all", "mean", head=2),)),  # every position: whole sequences
        Variant(edits=(edit("blocks.1.hook_resid_mid", "p4", "zero"),)),
        Variant(edits=(edit("blocks.0.attn.hook_z", "p1", head=0),)),  # from the tokens
        Variant(edits=(edit(Z1, "p0", head=0),), input=CLEAN),
    ]
    assert_naive(tiny_model, variants, data, Replacements(cache), max_rows=3)
    # From the tokens too: an edit at hook_resid_mid (ln2's input, also the residual stream)
    # reaches the MLP only, whichever way the pass runs.
    assert_naive(tiny_model, variants, data, Replacements(cache), resume=False)


def test_only_edited_positions_are_computed_and_the_rest_are_clean(tiny_model, data, cache):
    repl = Replacements(cache)
    check_inside_start(tiny_model, repl.inputs[CLEAN])  # the once-per-input self-check runs whole sequences
    variant = Variant(edits=(edit(Z1, "p5", head=0),))
    shapes: list[torch.Size] = []
    patterns: list[int] = []
    native = tiny_model.blocks[1].original_component
    handles = [
        native.ln2.register_forward_hook(lambda mod, args, out: shapes.append(args[0].shape)),
        tiny_model.blocks[1].attn.hook_pattern.register_forward_hook(lambda *a: patterns.append(1)),
    ]
    try:
        (got,) = run_variants(tiny_model, [variant], data, repl)
    finally:
        for h in handles:
            h.remove()
    torch.testing.assert_close(got, run_naive(tiny_model, variant, data, repl), atol=1e-5, rtol=0)
    assert patterns == [], "the last block's attention does not run"
    assert shapes == [torch.Size([N_SEQS, 1, TINY_CONFIG["d_model"]])], "one position per sequence"
    clean = repl.inputs[CLEAN].logits(tiny_model)
    others = [j for j in range(SEQ) if j != 5]
    assert torch.equal(got[:, others], clean[:, others])
    assert not torch.allclose(got[:, 5], clean[:, 5], atol=1e-3), "the edit changes the edited position"


def test_an_edit_that_selects_no_position_returns_the_clean_logits(tiny_model, data, cache):
    repl = Replacements(cache)
    (got,) = run_variants(tiny_model, [Variant(edits=(edit(Z1, "none", head=0),))], data, repl)
    assert torch.equal(got, repl.inputs[CLEAN].logits(tiny_model))


def test_the_inside_start_is_checked_against_the_clean_run(tiny_model, data, cache):
    wrong = dict(cache)
    wrong[z_hook(1)] = cache[z_hook(1)] + 0.5  # a cache that no longer matches the clean logits
    variant = Variant(edits=(edit(Z1, "p1", head=0),))
    mismatch = r"starting inside block 1 .* does not reproduce the logits of input 'clean'"
    with pytest.raises(SelfCheckError, match=mismatch):
        run_variants(tiny_model, [variant], data, Replacements(wrong))
    (resumed_off,) = run_variants(tiny_model, [variant], data, Replacements(wrong), resume=False)
    assert resumed_off.shape == (N_SEQS, SEQ, TINY_CONFIG["d_vocab"])


def test_linear_edits_inside_equal_the_naive_loop(tiny_model, data, cache):
    repl = Replacements(cache, tiny_model, data.masks)
    lin = HookEdit(HookSite("blocks.1.hook_mlp_out"), "p3", "linear", reads="blocks.1.hook_resid_mid", fit="all")
    lin_everywhere = HookEdit(lin.site, "all", "linear", reads=lin.reads, fit="all")
    variants = [
        Variant(edits=(lin,)),
        Variant(edits=(lin, edit(Z1, "p3", "zero", head=1))),
        Variant(edits=(lin_everywhere,)),
    ]
    assert start_point(tiny_model, variants[0], repl.cache) == StartPoint(Start.INSIDE_LAST_BLOCK, 1)
    assert_naive(tiny_model, variants, data, repl, max_rows=4)



def test_patching_into_another_input_resumes_from_that_inputs_run(tiny_model, data, cache):
    """Clean activations patched into a corrupted run, one head and position at a time (what
    activation patching compiles to): the corrupted run is cached once and the sweep resumes from it."""
    patches = [
        Variant(input="corrupted", edits=(edit(Z1, f"p{j}", "clean", head=h),)) for h in range(2) for j in range(SEQ)
    ]
    patches += [Variant(input="corrupted", edits=(edit("blocks.1.hook_resid_pre", "p3", "clean"),))]
    repl = Replacements(cache)
    patterns: list[int] = []
    handle = tiny_model.blocks[1].attn.hook_pattern.register_forward_hook(lambda *a: patterns.append(1))
    try:
        got = run_variants(tiny_model, patches, data, repl, max_rows=9)
    finally:
        handle.remove()
    assert "corrupted" in repl.inputs, "the corrupted run is cached"
    assert len(patterns) == 1, (
        "layer 1's attention module runs for caching the corrupted run only: not for the 24 hook_z patches "
        "(they start after it), nor for the resid_pre patch (a suffix pass computes its attention itself)"
    )
    for variant, logits in zip(patches, got, strict=True):
        torch.testing.assert_close(logits, run_naive(tiny_model, variant, data, repl), atol=1e-5, rtol=0)
    unedited = run_naive(tiny_model, Variant(input="corrupted"), data, repl)
    assert torch.equal(got[0][:, 1:], repl.inputs["corrupted"].logits(tiny_model)[:, 1:])
    torch.testing.assert_close(got[0][:, 1:], unedited[:, 1:], atol=1e-5, rtol=0)


def test_another_input_is_not_cached_when_that_would_cost_more_than_it_saves(tiny_model, data, cache):
    repl = Replacements(cache)
    one = Variant(input="corrupted", edits=(edit("blocks.1.hook_resid_pre", "p3", "clean"),))  # would skip half a pass
    (got,) = run_variants(tiny_model, [one], data, repl)
    assert "corrupted" not in repl.inputs
    torch.testing.assert_close(got, run_naive(tiny_model, one, data, repl), atol=1e-5, rtol=0)


def test_the_unedited_run_of_a_cached_input_is_not_run_again(tiny_model, data, cache):
    """Activation patching always asks for the unedited corrupted run too: caching the corrupted
    input then costs no extra pass, and that variant takes the caching pass's logits."""
    repl = Replacements(cache)
    unedited = Variant(input="corrupted")
    patch = Variant(input="corrupted", edits=(edit("blocks.1.hook_resid_pre", "p3", "clean"),))
    passes: list[int] = []
    handle = tiny_model.blocks[0].register_forward_hook(lambda *a: passes.append(1))
    try:
        got = run_variants(tiny_model, [unedited, patch], data, repl)
    finally:
        handle.remove()
    assert "corrupted" in repl.inputs
    assert len(passes) == 1, "layer 0 runs once: for caching the corrupted run"
    for variant, logits in zip([unedited, patch], got, strict=True):
        torch.testing.assert_close(logits, run_naive(tiny_model, variant, data, repl), atol=1e-5, rtol=0)
