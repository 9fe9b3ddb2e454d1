"""Suffix passes (:mod:`circuitcheck.run.suffix`): recompute only the positions an edit can reach, unembed only
the ones read. Every result is checked against the naive loop (one full forward pass per variant, TL's own
hooks), on TL's native block, an attention-only model, and Hugging Face's GPT-2 block;
GPT-NeoX (rotary) must not take them."""

from __future__ import annotations

import pytest
import torch

from circuitcheck.errors import SelfCheckError
from circuitcheck.plan.components import HookSite
from circuitcheck.plan.interventions import CLEAN, HookEdit, Variant
from circuitcheck.run.engine import EngineInputs, Replacements, clean_run, run_naive, run_variants
from circuitcheck.run.readouts import Collector
from circuitcheck.run.resume import Start, resume_hook, resume_hooks, starts_inside_blocks
from circuitcheck.run.suffix import POINTS, forward_suffix, suffix_capable, variant_fits
from circuitcheck.zoo.build import build_bridge, frozen
from tests.conftest import TINY_CONFIG
from tests.test_edges_hf import _hf_model

transformers = pytest.importorskip("transformers")
N_SEQS, SEQ = 5, 9


def _hf(kind: str, tmp_path_factory) -> object:
    from transformer_lens.model_bridge import TransformerBridge

    folder = tmp_path_factory.mktemp(kind)
    _hf_model(kind, n_layers=3 if kind == "gpt2" else 2).save_pretrained(folder)
    return frozen(TransformerBridge.boot_transformers(str(folder), device="cpu"))


MODELS = ["native", "attn_only", "gpt2"]


@pytest.fixture(scope="module", params=MODELS)
def model(request, tmp_path_factory):
    if request.param == "gpt2":
        return _hf("gpt2", tmp_path_factory)
    config = dict(TINY_CONFIG, n_layers=3, n_ctx=SEQ, d_vocab=40)
    if request.param == "attn_only":
        config["attn_only"] = True
    return frozen(build_bridge(config))


def _data(model) -> EngineInputs:
    gen = torch.Generator().manual_seed(3)
    vocab = int(model.cfg.d_vocab)
    tokens = torch.randint(0, vocab, (N_SEQS, SEQ), generator=gen)
    corrupted = torch.randint(0, vocab, (N_SEQS, SEQ), generator=gen)
    masks = {f"p{j}": torch.zeros(N_SEQS, SEQ, dtype=torch.bool) for j in range(SEQ)}
    for j in range(SEQ):
        masks[f"p{j}"][:, j] = True
    masks["role"] = torch.zeros(N_SEQS, SEQ, dtype=torch.bool)  # a role: another position in each sequence
    masks["role"][torch.arange(N_SEQS), torch.tensor([3, 5, 4, 7, 3])] = True
    return EngineInputs({CLEAN: tokens, "corrupted": corrupted}, masks)


def _variants(model) -> list[Variant]:
    """Clean activations patched into the corrupted run at every hook a suffix pass fires, at several
    positions and layers; a head's slice of ``hook_z``; two edits at different positions; a role."""
    n = int(model.cfg.n_layers)
    names = [h for h in POINTS if not (model.cfg.attn_only and h in ("hook_mlp_out", "mlp.hook_out"))]
    variants = []
    for i, name in enumerate(names):
        layer, position = i % n, 1 + (2 * i) % (SEQ - 2)
        variants.append(Variant("corrupted", (HookEdit(HookSite(f"blocks.{layer}.{name}"), f"p{position}", "clean"),)))
    z = "blocks.1.attn.hook_z"
    variants.append(Variant("corrupted", (HookEdit(HookSite(z, 1), "p4", "clean"),)))
    variants.append(Variant("corrupted", (HookEdit(HookSite(z, 0), "p6", "clean"),
                                          HookEdit(HookSite(f"blocks.{n - 1}.hook_resid_pre"), "p2", "zero"))))
    variants.append(Variant("corrupted", (HookEdit(HookSite("blocks.0.hook_resid_pre"), "role", "mean"),)))
    return variants


def _repl(model, data) -> Replacements:
    hooks = {f"blocks.{layer}.{name}" for layer in range(int(model.cfg.n_layers)) for name in POINTS}
    hooks = {h for h in hooks if h in model.hook_dict} | resume_hooks(model)
    _, cache = clean_run(model, data.inputs[CLEAN], hooks, max_rows=100)
    return Replacements(cache, model, data.masks)


def test_the_models_take_suffix_passes(model):
    assert suffix_capable(model)
    assert all(variant_fits(v) for v in _variants(model))


@pytest.mark.parametrize("max_rows", [3, 1000])
def test_suffix_passes_equal_the_naive_loop(model, max_rows):
    data = _data(model)
    repl = _repl(model, data)
    variants = _variants(model)
    got = run_variants(model, variants, data, repl, max_rows=max_rows)
    for variant, logits in zip(variants, got, strict=True):
        want = run_naive(model, variant, data, repl)
        torch.testing.assert_close(logits, want, atol=2e-5, rtol=0, msg=lambda m, v=variant: f"{v.describe()}: {m}")
    assert "corrupted" in repl.inputs, "the sweep resumes from the corrupted run's cache"


def test_only_the_read_positions_are_unembedded(model):
    """A sink that reads one position gets it right, and the unembedding sees that position only."""
    data = _data(model)
    repl = _repl(model, data)
    variants = _variants(model)
    reads = torch.zeros(SEQ, dtype=torch.bool)
    reads[SEQ - 1] = True
    sink = Collector(N_SEQS, lambda name: repl.inputs[name].logits(model), reads=reads)
    widths: list[int] = []
    handle = model.unembed.register_forward_hook(lambda mod, args, out: widths.append(int(out.shape[1])))
    try:
        run_variants(model, variants, data, repl, sink=sink)
    finally:
        handle.remove()
    for k, variant in enumerate(variants):
        want = run_naive(model, variant, data, repl)[:, SEQ - 1]
        torch.testing.assert_close(sink.outputs[k][:, SEQ - 1], want, atol=2e-5, rtol=0)
    # wider calls: caching the corrupted run, the suffix self-check (the second half), the inside-start one
    checks = [SEQ, SEQ - SEQ // 2] + ([SEQ] if starts_inside_blocks(model) else [])
    assert sorted(w for w in widths if w > 1) == sorted(checks), widths
    assert widths.count(1) >= 4, f"the variants' passes unembed one position each: {widths}"


def test_a_suffix_pass_computes_the_last_block_at_the_kept_positions_only(model):
    if model.cfg.attn_only:
        pytest.skip("attention-only: no MLP to count")
    data = _data(model)
    repl = _repl(model, data)
    acts = repl.cache
    n = int(model.cfg.n_layers)
    first, keep = 4, torch.tensor([SEQ - 1])
    widths: list[tuple[int, int]] = []
    hooks = [model.blocks[layer].mlp.register_forward_hook(
        lambda mod, args, out, layer=layer: widths.append((layer, int(out.shape[1])))) for layer in range(n)]
    try:
        prefix = [acts[resume_hook(model, layer)][:, :first] for layer in range(1, n)]
        logits, _ = forward_suffix(model, 1, first, acts[resume_hook(model, 1)], prefix, keep, 1, {})
    finally:
        for h in hooks:
            h.remove()
    assert widths == [(layer, SEQ - first) for layer in range(1, n - 1)] + [(n - 1, 1)]
    torch.testing.assert_close(logits[:, 0], repl.inputs[CLEAN].logits(model)[:, SEQ - 1], atol=2e-5, rtol=0)


def test_start_points_recompute_from_the_first_edited_position(model):
    from circuitcheck.run.engine import _start_points

    data = _data(model)
    repl = _repl(model, data)
    variants = [Variant(edits=(HookEdit(HookSite("blocks.1.attn.hook_z", 0), "p5", "zero"),)),
                Variant(edits=(HookEdit(HookSite("blocks.0.hook_resid_pre"), "role", "zero"),))]
    sink = Collector(N_SEQS, lambda name: repl.inputs[name].logits(model))
    points = _start_points(model, variants, data, repl, 100, sink)
    assert [(p.kind, p.layer, p.first) for p in points] == [(Start.LAYER, 1, 5), (Start.LAYER, 0, 3)]


def test_a_cache_that_disagrees_with_the_model_is_refused(model):
    data = _data(model)
    repl = _repl(model, data)
    gen = torch.Generator().manual_seed(0)  # not a constant shift: LayerNorm would remove it
    wrong = {k: v + torch.randn(v.shape, generator=gen) if k == resume_hook(model, 1) else v
             for k, v in repl.cache.items()}
    bad = Replacements(wrong, model, data.masks)
    variant = Variant(edits=(HookEdit(HookSite("blocks.1.hook_mlp_out" if not model.cfg.attn_only
                                               else "blocks.1.hook_attn_out"), "p6", "zero"),))
    with pytest.raises(SelfCheckError, match=r"recomputing positions .* does not reproduce the logits"):
        run_variants(model, [variant], data, bad)


def test_rotary_and_path_edits_take_the_whole_sequence_path(tmp_path_factory):
    neox = _hf("neox", tmp_path_factory)
    assert not suffix_capable(neox)
    reads = HookEdit(HookSite("blocks.1.hook_mlp_out"), "p3", "linear", reads="blocks.1.hook_resid_mid", fit="all")
    pattern = HookEdit(HookSite("blocks.1.attn.hook_pattern"), "p3", "zero")
    assert not variant_fits(Variant(edits=(reads,)))
    assert not variant_fits(Variant(edits=(pattern,)))
