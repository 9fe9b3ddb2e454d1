"""The edge-level circuit claims on a planted model whose true circuit is known by construction.

The model: TINY_CONFIG (2 layers, LN) with every head's W_O zeroed except head 0.0's, head 0.0's
W_Q/W_K zeroed (uniform attention: its q and k edges carry nothing), the MLPs' outputs and the
positional embedding zeroed. So the true circuit is embed -> logits, 0.0 -> logits, embed -> 0.0.v;
the decoy head 0.2 writes exactly zero, and every other edge carries nothing.
"""

from __future__ import annotations

import pytest
import torch

from circuitcheck.claims.faithfulness import FaithfulnessClaim
from circuitcheck.claims.localization import LocalizationClaim
from circuitcheck.claims.minimality import MinimalityClaim
from circuitcheck.claims.preservation import PreservationClaim
from circuitcheck.run.execute import run_file
from circuitcheck.spec.base import Statistics, Threshold
from circuitcheck.testing import make_plan, tiny_model
from circuitcheck.verdict.judge import decide, judge

TRUE = ["embed -> logits", "0.0 -> logits", "embed -> 0.0.v"]
CIRCUITS = {
    "true": {"edges": TRUE},
    "with_decoy": {"edges": [*TRUE, "0.2 -> logits"]},
    "missing": {"edges": ["embed -> logits", "embed -> 0.0.v"]},  # 0.0 -> logits left out
}
COMMON = {"statement": "planted", "ablation": "zero", "metric": "kl", "positions": "all"}


@pytest.fixture(scope="module")
def planted():
    model = tiny_model()
    with torch.no_grad():
        for layer in range(2):
            for h in range(3):
                if (layer, h) != (0, 0):
                    model.blocks[layer].attn.W_O[h].zero_()
            model.blocks[layer].mlp.W_out.zero_()
            model.blocks[layer].mlp.b_out.zero_()
        model.blocks[0].attn.W_Q[0].zero_()
        model.blocks[0].attn.W_K[0].zero_()
        model.blocks[0].attn.b_Q[0].zero_()
        model.blocks[0].attn.b_K[0].zero_()
        model.W_pos.zero_()
    return model


def verdicts(model, claims):
    plan = make_plan(model, claims, circuits=CIRCUITS)
    result = run_file(plan)
    assert any(c.name.startswith("full_edge_circuit") and c.passed for c in result.self_checks)
    return {c.id: judge(c, r, Statistics()) for c, r in zip(claims, result.claims, strict=True)}


def claims():
    def make(cls, id_, circuit, threshold, **extra):
        return cls.model_validate(COMMON | {"id": id_, "circuit": circuit, "threshold": threshold} | extra)

    return [
        make(MinimalityClaim, "min_true", "true", {"at_least": 1.0}),
        make(MinimalityClaim, "min_decoy", "with_decoy", {"at_least": 1.0}),
        make(PreservationClaim, "pres_true", "true", {"within": 0.01}),
        make(PreservationClaim, "pres_missing", "missing", {"within": 0.01}),
        make(LocalizationClaim, "loc_true", "true", {"at_least": 0.01}),
        make(FaithfulnessClaim, "faith_true", "true", {"at_least": 0.99}),
        make(FaithfulnessClaim, "faith_missing", "missing", {"at_least": 0.99}),
    ]


EXPECTED = {
    "min_true": "pass", "min_decoy": "fail", "pres_true": "pass", "pres_missing": "fail",
    "loc_true": "pass", "faith_true": "pass", "faith_missing": "fail",
}


def test_planted_verdicts(planted):
    found = verdicts(planted, claims())
    wrong = {k: v.verdict for k, v in found.items() if v.verdict != EXPECTED[k]}
    assert not wrong, {k: found[k].sentence for k in wrong}


def test_minimality_names_the_decoy_edge(planted):
    found = verdicts(planted, claims()[:2])
    decoy = found["min_decoy"]
    assert decoy.estimate == pytest.approx(0.75)
    assert "edge 0.2 -> logits is redundant (drop 0.000 [0.000, 0.000]" in decoy.sentence
    rows = {row["edge"]: row for row in decoy.details["edges"]}
    assert not rows["0.2 -> logits"]["necessary"]
    assert all(rows[e]["necessary"] for e in TRUE)


def test_within_is_an_equivalence_bound():
    within = Threshold(within=0.1)
    assert decide(0.0, -0.05, 0.05, within) == "pass"
    assert decide(0.3, 0.2, 0.4, within) == "fail"
    assert decide(-0.3, -0.4, -0.2, within) == "fail"
    assert decide(0.0, -0.2, 0.2, within) == "inconclusive"  # straddles both bounds: not outside
    assert decide(0.1, 0.05, 0.15, within) == "inconclusive"
    assert str(within) == "within ±0.1"
    with pytest.raises(ValueError, match="exactly one"):
        Threshold(within=0.1, at_least=0.0)


def test_unknown_circuit_is_a_plan_error(planted):
    from circuitcheck.errors import PlanError

    claim = PreservationClaim.model_validate(COMMON | {"id": "x", "circuit": "nope", "threshold": {"within": 0.1}})
    with pytest.raises(PlanError, match="unknown circuit 'nope'"):
        make_plan(planted, [claim], circuits=CIRCUITS)
