"""Edge-level interventions (circuitcheck.run.edges) against a naive one-circuit-at-a-time reference.

The reference (tests/edge_reference.py, shared with benchmarks/) is written independently of the engine:
one unstacked pass per circuit, one hook per receiver input, sender outputs kept by name, each receiver's
input summed by hand in a Python loop over senders, its own layer order, and torch's LayerNorm on the
native modules.
"""

from __future__ import annotations

import pytest
import torch

from circuitcheck.errors import SelfCheckError
from circuitcheck.plan.circuits import ModelShape
from circuitcheck.plan.components import HookSite
from circuitcheck.plan.interventions import CLEAN, HookEdit, Variant
from circuitcheck.run.edges import EdgeAblation, EdgeLayout, check_full_circuit, run_circuits
from circuitcheck.run.engine import EngineInputs, Replacements, clean_run, run_naive
from circuitcheck.spec.circuits import Edge, order, parse_edge
from circuitcheck.spec.components import Head, Logits
from circuitcheck.zoo.build import build_bridge
from tests.conftest import TINY_CONFIG
from tests.edge_reference import RESAMPLE_SEED, naive_ablated, naive_circuit

CONFIGS = {
    "1-layer": TINY_CONFIG | {"n_layers": 1, "seed": 11},
    "2-layer": TINY_CONFIG,
    "3-layer": TINY_CONFIG | {"n_layers": 3, "n_heads": 2, "seed": 5},
    "attn-only": TINY_CONFIG | {"attn_only": True, "seed": 8, "final_norm": "none"},
}
ABLATIONS = ["zero", "mean", "resample", "corrupted"]
MAX_DIFF: dict[str, float] = {}
"""The largest |engine - naive| seen per model (printed by the last test, for the record)."""


@pytest.fixture(scope="module", params=list(CONFIGS))
def model_and_tokens(request):
    model = build_bridge(CONFIGS[request.param])
    model.eval()
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():  # TL initialises biases to zero; random ones test that b_O is kept and b_Q recomputed
        for name, param in model.named_parameters():
            if name.endswith("bias"):
                param.add_(0.1 * torch.randn(param.shape, generator=gen))
    tokens = torch.randint(0, model.cfg.d_vocab, (5, 7), generator=gen)
    corrupted = torch.randint(0, model.cfg.d_vocab, (5, 7), generator=gen)
    return request.param, model, tokens, corrupted


def _ablation(method: str, corrupted: torch.Tensor) -> EdgeAblation:
    return EdgeAblation(method, seed=RESAMPLE_SEED if method == "resample" else None,  # type: ignore[arg-type]
                        corrupted=corrupted if method == "corrupted" else None)


# ---- tests --------------------------------------------------------------------------------------


def _random_circuits(layout: EdgeLayout, n: int, seed: int) -> list[list[Edge]]:
    gen = torch.Generator().manual_seed(seed)
    every = layout.all_edges()
    out = []
    for _ in range(n):
        p = float(torch.rand((), generator=gen))
        out.append([e for e in every if float(torch.rand((), generator=gen)) < p])
    return out


@pytest.mark.parametrize("method", ABLATIONS)
def test_engine_equals_naive_on_random_graphs(model_and_tokens, method):
    name, model, tokens, corrupted = model_and_tokens
    layout = EdgeLayout(ModelShape.of(model))
    circuits = _random_circuits(layout, 6, seed=len(name) + ABLATIONS.index(method))
    circuits += [layout.all_edges(), []]
    ablated = naive_ablated(model, tokens, method, corrupted)
    wanted = [naive_circuit(model, tokens, {str(e) for e in edges}, ablated) for edges in circuits]
    # one pass; variants and sequences split over passes; one row a call
    for max_rows in (4096, 7) if method != "mean" else (4096, 7, 1):
        got = run_circuits(model, tokens, circuits, _ablation(method, corrupted), max_rows=max_rows)
        for edges, logits, want in zip(circuits, got, wanted, strict=True):
            diff = float((logits - want).abs().max())
            MAX_DIFF[name] = max(MAX_DIFF.get(name, 0.0), diff)
            assert diff <= 1e-5, f"{name}, {method}, {len(edges)} edges, max_rows {max_rows}: {diff:.2e}"


def _late_circuits(layout: EdgeLayout, seed: int) -> list[list[Edge]]:
    """Circuits that change only late receivers, so their passes resume: the full graph less one edge
    (spread over every receiver), and less a random half of the edges into the last layer and logits."""
    gen = torch.Generator().manual_seed(seed)
    every = layout.all_edges()
    step = max(1, len(every) // 24)
    out = [[e for e in every if e != every[i]] for i in range(0, len(every), step)]
    last = layout.shape.n_layers - 1
    late = [e for e in every if isinstance(e.receiver, Logits) or order(e.receiver) >= order(Head(last, 0))]
    for _ in range(3):
        cut = {e for e in late if float(torch.rand((), generator=gen)) < 0.5}
        out.append([e for e in every if e not in cut])
    return out


@pytest.mark.parametrize("method", ["mean", "corrupted"])
def test_resumed_passes_equal_naive(model_and_tokens, method):
    name, model, tokens, corrupted = model_and_tokens
    layout = EdgeLayout(ModelShape.of(model))
    circuits = _late_circuits(layout, seed=len(name))
    ablated = naive_ablated(model, tokens, method, corrupted)
    wanted = [naive_circuit(model, tokens, {str(e) for e in edges}, ablated) for edges in circuits]
    for max_rows in (4096, 6):
        got = run_circuits(model, tokens, circuits, _ablation(method, corrupted), max_rows=max_rows)
        for edges, logits, want in zip(circuits, got, wanted, strict=True):
            diff = float((logits - want).abs().max())
            MAX_DIFF[name] = max(MAX_DIFF.get(name, 0.0), diff)
            assert diff <= 1e-5, f"{name}, {method}, {len(edges)} edges, max_rows {max_rows}: {diff:.2e}"


def test_a_pass_starts_at_the_first_receiver_its_circuits_change(tiny_model, monkeypatch):
    """Minimality variants start at their cut edge's receiver: an edge into logits runs only the final
    norm and unembedding; into layer 1 (its heads or its MLP: one pass), blocks 1.. from the cached
    residual stream; into layer 0 and the full circuit (the self-check), from the tokens."""
    from circuitcheck.run import edges as edges_module

    layout = EdgeLayout(ModelShape.of(tiny_model))
    every = layout.all_edges()
    cuts = [parse_edge(e) for e in ("0.0 -> 1.2.k", "1.1 -> logits", "0.2 -> mlp1", "embed -> 0.1.v", "mlp0 -> mlp1")]
    circuits = [[e for e in every if e != cut] for cut in cuts] + [every]
    points = edges_module.first_changed_point(layout, layout.keep(circuits))
    assert [layout.points[p].kind + str(layout.points[p].layer) for p in points] == [
        "heads1", "logits2", "mlp1", "heads0", "mlp1", "heads0"]
    starts: list[int] = []
    real = edges_module.forward_from
    monkeypatch.setattr(edges_module, "forward_from", lambda m, layer, x: starts.append(layer) or real(m, layer, x))
    calls: list[int] = []
    real_forward = type(tiny_model).forward
    monkeypatch.setattr(type(tiny_model), "forward",
                        lambda self, *a, **k: calls.append(1) or real_forward(self, *a, **k))
    run_circuits(tiny_model, torch.zeros(2, 4, dtype=torch.long), circuits, EdgeAblation("mean"))
    assert sorted(starts) == [1, 2] and len(calls) == 2  # the clean run, and layer 0's pass from the tokens


def test_random_circuits_change_the_output(model_and_tokens):
    """The comparison above could pass on a no-op engine if circuits did nothing; they do something."""
    _, model, tokens, corrupted = model_and_tokens
    layout = EdgeLayout(ModelShape.of(model))
    with torch.no_grad():
        clean = model(tokens)
    for got in run_circuits(model, tokens, _random_circuits(layout, 3, seed=1), _ablation("mean", corrupted)):
        assert float((got - clean).abs().max()) > 1e-3


@pytest.mark.parametrize("method", ABLATIONS)
def test_full_graph_reproduces_the_model(model_and_tokens, method):
    _, model, tokens, corrupted = model_and_tokens
    assert check_full_circuit(model, tokens, _ablation(method, corrupted)) <= 1e-5


def _every_sender_ablated(model, tokens, method: str) -> torch.Tensor:
    """The model with every sender's output ablated at its own hook, by the existing engine's naive loop."""
    sites = [HookSite("hook_embed"), HookSite("hook_pos_embed")]
    for layer in range(model.cfg.n_layers):
        sites.append(HookSite(f"blocks.{layer}.attn.hook_z"))
        if not model.cfg.attn_only:
            sites.append(HookSite(f"blocks.{layer}.hook_mlp_out"))
    _, cache = clean_run(model, tokens, {s.hook for s in sites}, 100)
    masks = {"all": torch.ones(tokens.shape, dtype=torch.bool)}
    seed = RESAMPLE_SEED if method == "resample" else None
    variant = Variant(edits=tuple(HookEdit(s, "all", method, seed) for s in sites))  # type: ignore[arg-type]
    with torch.no_grad():
        return run_naive(model, variant, EngineInputs({CLEAN: tokens}, masks), Replacements(cache, model, masks))


@pytest.mark.parametrize("method", ["zero", "mean", "resample"])
def test_empty_graph_equals_every_sender_ablated(model_and_tokens, method):
    _, model, tokens, corrupted = model_and_tokens
    (empty,) = run_circuits(model, tokens, [[]], _ablation(method, corrupted))
    torch.testing.assert_close(empty, _every_sender_ablated(model, tokens, method), atol=1e-5, rtol=0)


def test_empty_graph_with_corrupted_values_is_the_corrupted_run(model_and_tokens):
    _, model, tokens, corrupted = model_and_tokens
    (empty,) = run_circuits(model, tokens, [[]], _ablation("corrupted", corrupted))
    with torch.no_grad():
        torch.testing.assert_close(empty, model(corrupted), atol=1e-5, rtol=0)


def test_one_edge_matters_only_through_its_receiver(tiny_model):
    """Dropping '0.0 -> logits' from the full graph equals subtracting that head's direct effect."""
    layout = EdgeLayout(ModelShape.of(tiny_model))
    tokens = torch.randint(0, 11, (3, 6), generator=torch.Generator().manual_seed(2))
    dropped = parse_edge("0.0 -> logits")
    every = layout.all_edges()
    (got,) = run_circuits(tiny_model, tokens, [[e for e in every if e != dropped]], EdgeAblation("zero"))
    with torch.no_grad():
        _, cache = tiny_model.run_with_cache(tokens)
        direct = cache["blocks.0.attn.hook_z"][:, :, 0] @ tiny_model.W_O[0, 0]
        want = tiny_model.unembed(tiny_model.ln_final(cache["ln_final.hook_in"] - direct))
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


def test_hooks_that_do_not_fire_are_an_error(tiny_model, monkeypatch):
    from circuitcheck.run import edges as edges_module

    real = edges_module.edge_hooks

    def with_a_dead_hook(*args):
        return real(*args) | {"blocks.0.hook_resid_post": lambda act: None}

    tokens = torch.zeros(2, 4, dtype=torch.long)
    monkeypatch.setattr(edges_module, "edge_hooks", with_a_dead_hook)
    monkeypatch.setattr(edges_module, "counted_hooks", _counting_but_skipping("blocks.0.hook_resid_post"))
    with pytest.raises(SelfCheckError, match="never fired"):
        run_circuits(tiny_model, tokens, [[]], EdgeAblation("zero"))


def _counting_but_skipping(skip: str):
    """counted_hooks that never attaches ``skip``, as TransformerLens does with a name it does not know."""
    from circuitcheck.run.engine import counted_hooks

    def attach(model, hooks):
        return counted_hooks(model, {k: v for k, v in hooks.items() if k != skip})

    return attach


def test_full_circuit_self_check_fails_loudly_when_broken(tiny_model, monkeypatch):
    from circuitcheck.run import edges as edges_module

    real = edges_module._bias_before
    # a shift that varies over d_model (a constant one is invisible through the LayerNorms)
    monkeypatch.setattr(edges_module, "_bias_before",
                        lambda model, layout, point: real(model, layout, point) + torch.linspace(0, 0.1, 16))
    with pytest.raises(SelfCheckError, match="does not reproduce the model"):
        check_full_circuit(tiny_model, torch.zeros(2, 4, dtype=torch.long), EdgeAblation("zero"))


def test_unknown_edges_are_refused(tiny_model):
    with pytest.raises(ValueError, match="not an edge of this model"):
        run_circuits(tiny_model, torch.zeros(1, 3, dtype=torch.long), [[parse_edge("5.0 -> logits")]],
                     EdgeAblation("zero"))


def test_zz_report_max_difference():
    """Not a check: prints the largest |engine - naive| per model (run with -s to see it)."""
    print("max |engine - naive|:", {k: f"{v:.2e}" for k, v in MAX_DIFF.items()})
