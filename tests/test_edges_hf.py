"""The edge engine on Hugging Face bridges: GPT-2 (sequential blocks, learned positions) and GPT-NeoX
(parallel attention + MLP, rotary positions), tiny random models built here, against the naive reference
(tests/edge_reference.py, which reads ``cfg.parallel_attn_mlp`` on its own) and truths known by construction.

On GPT-NeoX a head of layer L is not upstream of mlpL: the MLP reads ``ln2`` of the block's input.
"""

from __future__ import annotations

import pytest
import torch

from circuitcheck.errors import PlanError
from circuitcheck.plan.circuits import ModelShape, compile_circuit
from circuitcheck.run.edges import EdgeAblation, EdgeLayout, check_full_circuit, run_circuits
from circuitcheck.spec.circuits import CircuitSpec, Edge, parse_edge
from circuitcheck.spec.components import Head, Mlp
from tests.edge_reference import RESAMPLE_SEED, naive_ablated, naive_circuit

transformers = pytest.importorskip("transformers")
ABLATIONS = ["zero", "mean", "resample", "corrupted"]


def _hf_model(kind: str, n_layers: int = 2):
    torch.manual_seed(7)
    if kind == "gpt2":
        cfg = transformers.GPT2Config(n_layer=n_layers, n_head=2, n_embd=32, vocab_size=40, n_positions=32)
        model = transformers.GPT2LMHeadModel(cfg)
    else:
        cfg = transformers.GPTNeoXConfig(num_hidden_layers=n_layers, num_attention_heads=2, hidden_size=32,
                                         intermediate_size=64, vocab_size=40, max_position_embeddings=32)
        model = transformers.GPTNeoXForCausalLM(cfg)
    with torch.no_grad():  # HF's 0.02 init leaves attention near uniform; larger weights make every edge matter
        for name, param in model.named_parameters():
            if name.endswith("bias"):
                param.add_(0.1 * torch.randn_like(param))
            elif param.dim() == 2:
                param.normal_(0.0, 0.25)
    return model.eval()


@pytest.fixture(scope="module", params=["gpt2", "neox"])
def hf_bridge(request, tmp_path_factory):
    from transformer_lens.model_bridge import TransformerBridge

    hf = _hf_model(request.param)
    folder = tmp_path_factory.mktemp(request.param)
    hf.save_pretrained(folder)
    bridge = TransformerBridge.boot_transformers(str(folder), device="cpu")
    bridge.eval()
    gen = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, 40, (4, 6), generator=gen)
    corrupted = torch.randint(0, 40, (4, 6), generator=gen)
    return request.param, hf, bridge, tokens, corrupted


def _ablation(method: str, corrupted: torch.Tensor) -> EdgeAblation:
    return EdgeAblation(method, seed=RESAMPLE_SEED if method == "resample" else None,  # type: ignore[arg-type]
                        corrupted=corrupted if method == "corrupted" else None)


def test_the_bridge_is_the_hf_model(hf_bridge):
    _, hf, bridge, tokens, _ = hf_bridge
    with torch.no_grad():
        torch.testing.assert_close(bridge(tokens), hf(tokens).logits, atol=1e-5, rtol=0)


def test_the_shape_knows_parallel_blocks(hf_bridge):
    kind, _, bridge, _, _ = hf_bridge
    shape = ModelShape.of(bridge)
    assert shape.parallel_attn_mlp is (kind == "neox")
    edges = set(shape.all_edges())
    assert (Edge(Head(0, 1), Mlp(0)) in edges) is (kind == "gpt2")
    assert Edge(Head(0, 1), Mlp(1)) in edges and Edge(Mlp(0), Mlp(1)) in edges


def _circuits(layout: EdgeLayout, seed: int) -> list[list[Edge]]:
    """Random graphs, the full and the empty one, and single-edge cuts into every kind of receiver."""
    gen = torch.Generator().manual_seed(seed)
    every = layout.all_edges()
    out = [[e for e in every if float(torch.rand((), generator=gen)) < p] for p in (0.2, 0.5, 0.8, 0.97)]
    picks = torch.randperm(len(every), generator=gen)[:12].tolist()
    return [*out, every, [], *([e for e in every if e != every[i]] for i in picks)]


@pytest.mark.parametrize("method", ABLATIONS)
def test_engine_equals_naive(hf_bridge, method):
    kind, _, bridge, tokens, corrupted = hf_bridge
    layout = EdgeLayout(ModelShape.of(bridge))
    circuits = _circuits(layout, seed=ABLATIONS.index(method))
    ablated = naive_ablated(bridge, tokens, method, corrupted)
    with torch.no_grad():
        clean = bridge(tokens)
    for max_rows in (4096, 5):
        got = run_circuits(bridge, tokens, circuits, _ablation(method, corrupted), max_rows=max_rows)
        moved = 0.0
        for edges, logits in zip(circuits, got, strict=True):
            want = naive_circuit(bridge, tokens, {str(e) for e in edges}, ablated)
            diff = float((logits - want).abs().max())
            assert diff <= 1e-5, f"{kind}, {method}, {len(edges)} edges, max_rows {max_rows}: {diff:.2e}"
            moved = max(moved, float((logits - clean).abs().max()))
        assert method == "zero" or moved > 1e-2, "the circuits change the logits, so the comparison means something"


@pytest.mark.parametrize("method", ["mean", "corrupted"])
def test_full_graph_reproduces_the_model(hf_bridge, method):
    _, _, bridge, tokens, corrupted = hf_bridge
    assert check_full_circuit(bridge, tokens, _ablation(method, corrupted)) <= 1e-5


def test_mlp_input_cut_whole_reads_the_corrupted_block_input(hf_bridge):
    """Every edge into mlp0 cut, carrying corrupted values: mlp0 computes from the corrupted run's input to
    its norm, which on parallel blocks is the block's input (resid_pre), on sequential ones resid_mid."""
    kind, _, bridge, tokens, corrupted = hf_bridge
    layout = EdgeLayout(ModelShape.of(bridge))
    kept = [e for e in layout.all_edges() if e.receiver != Mlp(0)]
    (got,) = run_circuits(bridge, tokens, [kept], EdgeAblation("corrupted", corrupted=corrupted))
    read = "blocks.0.hook_resid_pre" if kind == "neox" else "blocks.0.hook_resid_mid"
    with torch.no_grad():
        _, cache = bridge.run_with_cache(corrupted)
        want = bridge.run_with_hooks(tokens, fwd_hooks=[("blocks.0.ln2.hook_in", lambda act, hook: cache[read])])
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


def test_same_layer_head_to_mlp_edges_are_refused_on_parallel_blocks(hf_bridge):
    kind, _, bridge, tokens, _ = hf_bridge
    if kind != "neox":
        pytest.skip("sequential blocks have these edges")
    shape = ModelShape.of(bridge)
    spec = CircuitSpec.model_validate({"edges": ["embed -> 0.0.q", "0.0 -> mlp0", "mlp0 -> logits"]})
    with pytest.raises(PlanError, match=r"edge '0\.0 -> mlp0' does not exist in this model: .*in parallel"):
        compile_circuit("c", spec, shape)
    with pytest.raises(ValueError, match="not an edge of this model"):
        run_circuits(bridge, tokens, [[parse_edge("0.0 -> mlp0")]], EdgeAblation("zero"))
    nodes = compile_circuit("c", CircuitSpec.model_validate({"nodes": ["embed", "0.0", "mlp0", "logits"]}), shape)
    assert Edge(Head(0, 0), Mlp(0)) not in nodes.edges and Edge(Head(0, 0), Mlp(0)) not in nodes.removed


def test_gptj_is_refused_before_any_forward_pass(tmp_path):
    """GPT-J's blocks share one norm between attention and the MLP: there is no ln2 where an MLP's input
    could be replaced, so edge-level runs refuse the model instead of giving a wrong number."""
    from transformer_lens.model_bridge import TransformerBridge

    from circuitcheck.run.edges import UnsupportedModelError

    cfg = transformers.GPTJConfig(n_layer=2, n_head=2, n_embd=32, vocab_size=40, n_positions=32, rotary_dim=8)
    transformers.GPTJForCausalLM(cfg).save_pretrained(tmp_path)
    bridge = TransformerBridge.boot_transformers(str(tmp_path), device="cpu")
    tokens = torch.zeros(1, 3, dtype=torch.long)
    with pytest.raises(UnsupportedModelError, match=r"no hook 'blocks\.0\.ln2\.hook_in'.*\n  fix: "):
        check_full_circuit(bridge, tokens, EdgeAblation("zero"))
