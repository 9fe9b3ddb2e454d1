"""Weight-based claims (T3, T4) against independent computations on the tiny model."""

from __future__ import annotations

import pytest
import torch

from circuitcheck.claims.qk_positional_order import QKPositionalOrderClaim
from circuitcheck.claims.qk_token_pairs import QKTokenPairsClaim
from circuitcheck.claims.weight_common import qk_scores, token_inputs
from circuitcheck.errors import PlanError
from circuitcheck.testing import check_claim_kind, make_plan
from tests.conftest import TINY_CONFIG

V = TINY_CONFIG["d_vocab"]


def measure(model, claim):
    plan = make_plan(model, [claim])
    return plan.claims[0].score(None)  # type: ignore[arg-type]  (weight claims read no run)


def test_qk_scores_reproduce_the_attention_pattern(tiny_model):
    tokens = torch.randint(0, V, (1, TINY_CONFIG["n_ctx"]))
    with torch.no_grad():
        _, cache = tiny_model.run_with_cache(tokens)
        x = cache["blocks.1.ln1.hook_out"][0]
        scores = qk_scores(tiny_model, 1, 2, x, x)
    n = scores.shape[0]
    masked = scores.masked_fill(torch.ones(n, n, dtype=torch.bool).triu(1), float("-inf"))
    assert torch.allclose(masked.softmax(-1), cache["blocks.1.attn.hook_pattern"][0, 2], atol=1e-6)


def pairs_claim(pairs, top_k=1):
    return QKTokenPairsClaim.model_validate(
        dict(
            id="t3",
            statement="s",
            kind="qk_token_pairs",
            layer=0,
            head=1,
            pairs=pairs,
            top_k=top_k,
            threshold={"at_least": 0.5},
        )
    )


def test_best_keys_are_recovered_and_worst_keys_are_not(tiny_model):
    with torch.no_grad():
        e = token_inputs(tiny_model, 0)
        scores = qk_scores(tiny_model, 0, 1, e, e)
    best = [[q, int(scores[q].argmax())] for q in range(V)]
    worst = [[q, int(scores[q].argmin())] for q in range(V)]
    assert measure(tiny_model, pairs_claim(best)).estimate == 1.0
    assert measure(tiny_model, pairs_claim(worst)).estimate == 0.0
    assert measure(tiny_model, pairs_claim(worst, top_k=V)).estimate == 1.0


def test_pairs_outside_the_vocabulary_are_refused(tiny_model):
    with pytest.raises(PlanError, match=r"token ids must lie in \[0, 11\)"):
        make_plan(tiny_model, [pairs_claim([[0, V]])])


def test_trigram_prefixes_need_a_trigram_card(tiny_model):
    with pytest.raises(PlanError, match="the model card lists no trigrams"):
        make_plan(tiny_model, [pairs_claim("trigram_prefixes")])


def order_claim(direction):
    return QKPositionalOrderClaim.model_validate(
        dict(
            id="t4",
            statement="s",
            kind="qk_positional_order",
            layer=1,
            head=0,
            direction=direction,
            threshold={"at_least": 0.9},
        )
    )


def test_positional_order_directions_are_complementary(tiny_model):
    up = measure(tiny_model, order_claim("increasing"))
    down = measure(tiny_model, order_claim("decreasing"))
    n = TINY_CONFIG["n_ctx"]
    assert up.details["steps"] == n * (n - 1) // 2  # adjacent key pairs (j, j+1) with j+1 <= i, over all i
    assert up.estimate + down.estimate == pytest.approx(1.0)


def test_out_of_range_head_is_refused(tiny_model):
    claim = QKPositionalOrderClaim.model_validate(
        dict(
            id="t4",
            statement="s",
            kind="qk_positional_order",
            layer=0,
            head=5,
            direction="increasing",
            threshold={"at_least": 0.9},
        )
    )
    with pytest.raises(PlanError, match="head 5 is out of range"):
        make_plan(tiny_model, [claim])


def composition(writer, reader, mode):
    from circuitcheck.claims.composition import CompositionClaim

    return CompositionClaim.model_validate(
        dict(
            id="f1",
            statement="s",
            kind="composition",
            writer=writer,
            reader=reader,
            mode=mode,
            scale="raw",
            threshold={"at_least": 0.1},
        )
    )


@pytest.mark.parametrize("mode", ["q", "k", "v"])
def test_composition_matches_transformer_lens(tiny_model, mode):
    with torch.no_grad():
        reference = tiny_model.all_composition_scores(mode.upper())
    for writer in range(3):
        for reader in range(3):
            got = measure(tiny_model, composition(f"0.{writer}", f"1.{reader}", mode)).estimate
            assert got == pytest.approx(float(reference[0, writer, 1, reader]), rel=1e-4)


def test_composition_needs_a_later_reader(tiny_model):
    with pytest.raises(PlanError, match="must sit in a later layer"):
        make_plan(tiny_model, [composition("1.0", "0.1", "k")])


def test_copying_score_of_a_copying_circuit():
    import numpy as np

    from circuitcheck.claims.ov_copying import copying_score

    gen = np.random.default_rng(0)
    basis = gen.standard_normal((6, 6))
    eig = np.array([3.0, 2.0, 1.0, 0.5, -0.5, 0.2])
    matrix = basis @ np.diag(eig) @ np.linalg.inv(basis)
    score, positive = copying_score(torch.tensor(matrix))
    assert score == pytest.approx(eig.sum() / np.abs(eig).sum(), rel=1e-6)
    assert positive == pytest.approx(5 / 6)
    assert copying_score(torch.eye(4))[0] == pytest.approx(1.0)
    assert copying_score(-torch.eye(4))[0] == pytest.approx(-1.0)


def test_ov_copying_claim_reads_the_full_ov_circuit(tiny_model):
    from circuitcheck.claims.ov_copying import OVCopyingClaim, copying_score

    def by_hand(plan) -> float:
        with torch.no_grad():
            full = tiny_model.W_E @ tiny_model.W_V[1, 2] @ tiny_model.W_O[1, 2] @ tiny_model.W_U
        return copying_score(full)[0]

    m = check_claim_kind(OVCopyingClaim, "head: '1.2'", tiny_model, by_hand, atol=1e-12)
    assert m.exact and m.stats is None
