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
from circuitcheck.plan.circuits import ModelShape
from circuitcheck.run.execute import run_file
from circuitcheck.spec.base import Statistics, Threshold
from circuitcheck.testing import make_plan, tiny_model
from circuitcheck.verdict.judge import decide, judge
from circuitcheck.verdict.multiple import apply_holm

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


DECOYS = ["0.2 -> logits", "0.1 -> logits", "1.0 -> logits"]  # heads whose W_O is zero: no edge carries anything


def localization(id_, circuit, threshold, **extra):
    return LocalizationClaim.model_validate(COMMON | {"id": id_, "circuit": circuit, "threshold": threshold} | extra)


# top1_agreement, not kl: kl is not monotone in what is removed here (removing embed -> logits alone leaves
# 0.0 -> logits confidently wrong, a larger kl than removing the whole circuit), so under kl random sets
# holding embed -> logits out-drop the true circuit.


def test_localization_random_baseline_beats_chance_only_for_the_true_circuit(planted):
    extra = {"random_baseline": {"n": 79, "seed": 7, "alpha": 0.05}, "metric": "top1_agreement"}
    claims_ = [
        localization("loc_true", "true", {"at_least": 0.5}, **extra),
        # at_least -1: the interval alone passes, so only the random baseline (alpha) can fail it
        localization("loc_decoy", "decoy", {"at_least": -1.0}, **extra),
    ]
    result = run_file(make_plan(planted, claims_, circuits={"true": {"edges": TRUE}, "decoy": {"edges": DECOYS}}))
    by_id = {r.claim_id: r.measurement for r in result.claims}
    true, decoy = by_id["loc_true"], by_id["loc_decoy"]
    assert true.random is not None and decoy.random is not None
    assert true.random.n == decoy.random.n == 79
    assert true.details["random_n"] == 79 and true.details["p_value"] == true.random.p_value
    # no random 3-edge set removes as much as the whole true circuit: the smallest p-value there is
    assert true.estimate > 0.5
    assert true.random.p_value == pytest.approx(1 / 80)
    assert true.random.mean < true.estimate
    # the decoys carry nothing: every random set drops at least as much (agreement <= 1), so p is 1
    assert decoy.estimate == pytest.approx(0.0, abs=1e-6)
    assert decoy.random.p_value == pytest.approx(1.0)

    # as circuitcheck.verdict.stage.judge_file does (make_plan's spec has no statistics block)
    judged = [judge(c, r, Statistics()) for c, r in zip(claims_, result.claims, strict=True)]
    verdicts_ = {v.claim_id: v for v in apply_holm(judged, {c.id: c.random_baseline.alpha for c in claims_})}
    holm_true, holm_decoy = verdicts_["loc_true"].holm, verdicts_["loc_decoy"].holm
    assert holm_true.p_adjusted == pytest.approx(min(1.0, 2 * true.random.p_value))  # the smaller of two p-values
    assert holm_true.p_adjusted < 0.05 and verdicts_["loc_true"].verdict == "pass"
    assert holm_decoy.p_adjusted >= 0.05
    assert verdicts_["loc_decoy"].verdict == "fail", verdicts_["loc_decoy"].sentence
    assert "Not better than chance at alpha 0.05" in verdicts_["loc_decoy"].sentence


def test_localization_random_p_value_recomputed_from_the_random_drops(planted):
    """Each random set, drawn as documented (seeded, same size, from the full graph), is scored as a
    circuit of its own; the claim's mean and p-value must match those drops."""
    n, seed = 39, 7
    everything = ModelShape.of(planted).all_edges()
    gen = torch.Generator().manual_seed(seed)
    picks = [sorted(torch.randperm(len(everything), generator=gen)[: len(TRUE)].tolist()) for _ in range(n)]
    # removing a random set = keeping its complement: with kl (0 on the model itself), the preservation
    # difference of the complement is exactly the localization drop of the set
    circuits = {"true": {"edges": TRUE}} | {
        f"r{i}": {"edges": [str(e) for j, e in enumerate(everything) if j not in p]} for i, p in enumerate(picks)
    }
    claims_ = [localization("loc_true", "true", {"at_least": 0.01}, random_baseline={"n": n, "seed": seed})]
    claims_ += [PreservationClaim.model_validate(COMMON | {"id": f"r{i}", "circuit": f"r{i}", "threshold": {
        "within": 0.01}}) for i in range(n)]
    result = run_file(make_plan(planted, claims_, circuits=circuits))
    by_id = {r.claim_id: r.measurement for r in result.claims}
    true = by_id["loc_true"]
    assert all(by_id[f"r{i}"].details["metric_model"] == pytest.approx(0.0, abs=1e-9) for i in range(n))
    drops = torch.tensor([by_id[f"r{i}"].estimate for i in range(n)], dtype=torch.float64)
    assert true.random.n == n
    assert true.random.mean == pytest.approx(float(drops.mean()), rel=1e-6, abs=1e-9)
    as_much = int((drops >= true.estimate).sum())
    assert true.random.p_value == pytest.approx((1 + as_much) / (1 + n))
    # under kl (see above) some random sets out-drop the true circuit: a p-value other than the minimum
    assert 0 < as_much < n and true.random.p_value > 1 / (1 + n)


@pytest.mark.parametrize("circuit", ["true", "missing"])
def test_preservation_ratio_is_the_difference_over_the_model(planted, circuit):
    """estimate: ratio is M_circuit / M_model - 1, i.e. the difference estimate over M_model (on a metric whose
    model value is far from zero: loss), and is judged with the same equivalence bound."""
    def make(id_, estimate, within):
        return PreservationClaim.model_validate(COMMON | {
            "id": id_, "circuit": circuit, "metric": "loss", "threshold": {"within": within}, "estimate": estimate,
        })

    claims_ = [make("diff", "difference", 0.01), make("ratio", "ratio", 0.01)]
    found = verdicts(planted, claims_)
    diff, ratio = found["diff"], found["ratio"]
    kept, model = ratio.details["metric_circuit"], ratio.details["metric_model"]
    assert (kept, model) == (diff.details["metric_circuit"], diff.details["metric_model"])
    assert abs(model) > 1.0
    assert diff.estimate == pytest.approx(kept - model, rel=1e-9, abs=1e-12)
    assert ratio.estimate == pytest.approx(kept / model - 1.0, rel=1e-9, abs=1e-12)
    assert ratio.estimate == pytest.approx(diff.estimate / model, rel=1e-9, abs=1e-12)
    expected = "pass" if ratio.ci_low >= -0.01 and ratio.ci_high <= 0.01 else (
        "fail" if ratio.ci_low > 0.01 or ratio.ci_high < -0.01 else "inconclusive")
    assert ratio.verdict == expected, ratio.sentence
    if circuit == "true":
        assert abs(ratio.estimate) < 1e-6 and ratio.verdict == "pass", ratio.sentence
    else:  # the loss barely moves without 0.0 -> logits: the point estimate is off zero, the interval wide
        assert ratio.verdict != "pass" and abs(ratio.estimate) > 1e-3, ratio.sentence
