"""The hand-built induction model (models/build_induction.py): induction through head 1.0; the decoys do nothing."""

from __future__ import annotations

import pytest
import torch

from circuitcheck.data.repeated import generate_repeated
from circuitcheck.zoo.load import load


@pytest.fixture(scope="module")
def induction():
    return load("induction")


@pytest.fixture(scope="module")
def batch(induction):
    task = induction.card["task"]
    return generate_repeated(300, task["length"], task["n_tokens"], task["bos"], seed=7)


def zero_head(layer: int, head: int):
    def hook(z, hook):
        z = z.clone()
        z[:, :, head] = 0.0
        return z

    return (f"blocks.{layer}.attn.hook_z", hook)


def run(model, tokens, hooks=()):
    with torch.no_grad():
        return model.run_with_hooks(tokens, fwd_hooks=list(hooks)).double()


def second_half_accuracy(logits, batch) -> float:
    where = batch.role_mask("second") & (batch.next_token >= 0)
    return float((logits.argmax(-1) == batch.next_token)[where].double().mean())


def test_induction_is_done_on_the_repeated_half(induction, batch):
    logits = run(induction.model, batch.tokens)
    assert second_half_accuracy(logits, batch) >= 0.95
    where = batch.role_mask("second") & (batch.next_token >= 0)
    p = logits.softmax(-1).gather(-1, batch.next_token.clamp(min=0)[..., None])[..., 0][where]
    assert float(p.mean()) >= 0.99
    assert induction.card["evaluation"]["accuracy_second"] >= 0.95


def test_the_first_half_is_not_predictable(induction, batch):
    # a guard that accuracy on the repeated half is earned: the first copy's next tokens are random
    logits = run(induction.model, batch.tokens)
    where = batch.role_mask("first")
    assert float((logits.argmax(-1) == batch.next_token)[where].double().mean()) < 0.2


@pytest.mark.parametrize("layer", [0, 1])
def test_ablating_the_circuit_heads_breaks_induction(induction, batch, layer):
    logits = run(induction.model, batch.tokens, [zero_head(layer, 0)])
    assert second_half_accuracy(logits, batch) < 0.3


@pytest.mark.parametrize("layer", [0, 1])
def test_ablating_a_decoy_changes_no_logit(induction, batch, layer):
    clean = run(induction.model, batch.tokens)
    ablated = run(induction.model, batch.tokens, [zero_head(layer, 1)])
    assert float((clean - ablated).abs().max()) < 1e-4


def test_the_decoys_do_write_something(induction, batch):
    # a decoy whose output were zero would make the test above vacuous
    captured: dict[int, torch.Tensor] = {}

    def keep(layer: int):
        def hook(z, hook):
            captured[layer] = z.detach().clone()

        return (f"blocks.{layer}.attn.hook_z", hook)

    with torch.no_grad():
        induction.model.run_with_hooks(batch.tokens, fwd_hooks=[keep(0), keep(1)])
    for layer in (0, 1):
        assert float(captured[layer][:, :, 1].abs().max()) > 0.1


def test_the_logits_are_the_induction_heads_output(induction, batch):
    # no LayerNorm anywhere, and the unembedding reads head 1.0's subspace only
    ablated = run(induction.model, batch.tokens, [zero_head(1, 0)])
    assert float(ablated.abs().max()) < 1e-5


def test_repeated_data_layout():
    batch = generate_repeated(50, 6, 20, 20, seed=3)
    tokens = batch.tokens
    assert tokens.shape == (50, 13)
    assert bool((tokens[:, 0] == 20).all())
    assert torch.equal(tokens[:, 1:7], tokens[:, 7:])
    assert all(len(set(row.tolist())) == 6 for row in tokens[:, 1:7])  # the first copy's tokens are distinct
    assert int(tokens[:, 1:].max()) < 20
    assert [batch.role_names[r] for r in batch.roles[0].tolist()] == ["bos"] + ["first"] * 6 + ["second"] * 6
    assert torch.equal(batch.next_token[:, :-1], tokens[:, 1:]) and bool((batch.next_token[:, -1] == -1).all())
    assert torch.equal(generate_repeated(50, 6, 20, 20, seed=3).tokens, tokens)
