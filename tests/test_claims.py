"""Claim kinds scored against hand computations on a tiny random model."""

from __future__ import annotations

import textwrap

import pytest
import torch

from circuitcheck.claims.ablation import AblationClaim
from circuitcheck.claims.activation_patching import ActivationPatchingClaim, corrupt_tokens
from circuitcheck.claims.association import AssociationClaim
from circuitcheck.data.batch import TokenBatch, next_tokens_of
from circuitcheck.metrics import metrics
from circuitcheck.run.execute import run_file
from circuitcheck.testing import check_claim_kind, make_plan
from tests.conftest import TINY_CONFIG

N, SEQ, V = 12, TINY_CONFIG["n_ctx"], TINY_CONFIG["d_vocab"]


def ablation(**kw):
    base = dict(
        id="a",
        statement="s",
        kind="ablation",
        positions="Y",
        metric="logprob",
        threshold={"at_least": 0.0},
        method="zero",
    )
    return AblationClaim.model_validate(base | kw)


def estimate(model, claim) -> tuple[float, dict]:
    result = run_file(make_plan(model, [claim]))
    m = result.claims[0].measurement
    return m.estimate, m.details


def test_necessity_matches_a_manual_ablation(tiny_model):
    def by_hand(plan) -> float:  # zero head 1.1 with a plain TransformerLens hook
        def zero_head(z, hook):
            z = z.clone()
            z[:, :, 1] = 0.0
            return z

        tokens = plan.batch.tokens
        with torch.no_grad():
            clean = tiny_model(tokens)
            ablated = tiny_model.run_with_hooks(tokens, fwd_hooks=[("blocks.1.attn.hook_z", zero_head)])
        mask, tgt = plan.masks["Y"], plan.batch.next_token
        lp = metrics.get("logprob")
        return float(lp(clean[mask], tgt[mask], clean[mask]).mean() - lp(ablated[mask], tgt[mask], clean[mask]).mean())

    claim = """
        mode: necessity
        components: ["1.1"]
        method: zero
        effect: absolute_drop
        positions: Y
        metric: logprob
    """
    m = check_claim_kind(AblationClaim, textwrap.dedent(claim), tiny_model, by_hand)
    assert m.details["drop"] == pytest.approx(m.estimate, abs=1e-12)
    assert m.stats is not None and not m.exact


def test_lower_is_better_metrics_count_a_rise_as_a_drop(tiny_model):
    up = estimate(
        tiny_model, ablation(mode="necessity", components=["attn1", "mlp1"], effect="absolute_drop", metric="loss")
    )[0]
    down = estimate(
        tiny_model, ablation(mode="necessity", components=["attn1", "mlp1"], effect="absolute_drop", metric="logprob")
    )[0]
    assert up == pytest.approx(down, abs=1e-5)


@pytest.mark.parametrize("method", ["zero", "mean", "resample"])
def test_full_circuit_retains_everything_and_empty_nothing(tiny_model, method):
    seed = {"resample_seed": 4} if method == "resample" else {}
    everything = ["embed", "pos_embed", "attn0", "mlp0", "attn1", "mlp1"]
    full = ablation(mode="sufficiency", components=everything, method=method, **seed)
    empty = ablation(mode="sufficiency", components=[], method=method, **seed)
    assert estimate(tiny_model, full)[0] == pytest.approx(1.0, abs=1e-6)
    assert estimate(tiny_model, empty)[0] == pytest.approx(0.0, abs=1e-6)


def test_patching_everything_recovers_all_and_patching_too_early_nothing(tiny_model):
    def claim(patch_at):
        return ActivationPatchingClaim.model_validate(
            dict(id="p", statement="s", kind="activation_patching", patch=["embed", "pos_embed"], patch_at=patch_at,
                 corruption={"scheme": "resample_tokens", "positions": "late", "seed": 3},
                 positions="late", metric="logprob", threshold={"at_least": 0.5})
        )

    assert estimate(tiny_model, claim("all"))[0] == pytest.approx(1.0, abs=1e-5)
    early_only = estimate(tiny_model, claim("Y"))[0]  # position 5 precedes the corrupted positions 8+
    assert early_only == pytest.approx(0.0, abs=1e-5)


def test_corruption_changes_exactly_the_selected_tokens():
    tokens = torch.randint(0, V, (50, SEQ))
    mask = torch.zeros_like(tokens, dtype=torch.bool)
    mask[:, 3] = True
    out = corrupt_tokens(tokens, mask, V, seed=0)
    assert (out[mask] != tokens[mask]).all()
    assert torch.equal(out[~mask], tokens[~mask])
    assert out.max() < V and out.min() >= 0


def test_association_counts_match_set_arithmetic(tiny_model):
    sets: dict[str, set] = {}

    def by_hand(plan) -> float:  # the two position sets, by loops over the clean run
        with torch.no_grad():
            logits, cache = tiny_model.run_with_cache(plan.batch.tokens)
        pattern = cache["blocks.1.attn.hook_pattern"]
        left, right = set(), set()
        probs = logits.softmax(-1)
        for b in range(N):
            for p in range(SEQ - 1):  # the last position has no next token and is not scored
                if p >= 1 and pattern[b, 2, p, p - 1] > 0.3:
                    left.add((b, p))
                if probs[b, p, plan.batch.tokens[b, p + 1]] > 0.1:
                    right.add((b, p))
        sets.update(left=left, right=right)
        return len(left & right) / len(left | right)

    claim = {
        "positions": "all",
        "metric": "jaccard",
        "left": {"kind": "attention", "layer": 1, "head": 2, "key_offset": -1, "above": 0.3},
        "right": {"kind": "correct_prob", "above": 0.1},
    }
    m = check_claim_kind(AssociationClaim, claim, tiny_model, by_hand, atol=1e-12)
    left, right = sets["left"], sets["right"]
    assert m.details["n_left"] == len(left) and m.details["n_right"] == len(right)
    assert m.details["n_both"] == len(left & right)
    assert 0 < len(left) and 0 < len(right)


def test_random_baseline_gives_a_p_value(tiny_model):
    claim = ablation(mode="necessity", components=["1.1"], effect="absolute_drop", random_baseline={"n": 30, "seed": 2})
    est, details = estimate(tiny_model, claim)
    assert details["random_n"] == 30
    assert 1 / 31 <= details["p_value"] <= 1.0
    plan = make_plan(tiny_model, [claim])
    described = "\n".join(plan.claims[0].describe)
    assert "30 random circuits of 1 component site(s) from a pool of 10, seed 2" in described
    assert "random0" not in described


def test_random_baseline_of_everything_is_refused(tiny_model):
    from circuitcheck.errors import PlanError

    everything = ["embed", "pos_embed", "attn0", "mlp0", "attn1", "mlp1"]
    claim = ablation(mode="sufficiency", components=everything, random_baseline={"n": 10, "seed": 0})
    with pytest.raises(PlanError, match="are not random"):
        make_plan(tiny_model, [claim])


def test_floor_checks_the_per_example_quantile(tiny_model):
    from circuitcheck.spec.base import Statistics
    from circuitcheck.verdict.judge import judge

    def verdict(at_least):
        claim = ablation(mode="necessity", components=["attn1", "mlp1"], effect="absolute_drop",
                         threshold={"at_most": 100.0}, floor={"quantile": 0.1, "at_least": at_least})
        result = run_file(make_plan(tiny_model, [claim])).claims[0]
        return judge(claim, result, Statistics(bootstrap=200)), result

    low, result = verdict(-100.0)
    per_example = result.measurement.per_example
    assert per_example is not None and len(per_example) == N  # one scored position per sequence
    assert per_example.mean().item() == pytest.approx(result.measurement.estimate, abs=1e-6)
    assert low.verdict == "pass" and "meeting the floor" in low.sentence
    high, _ = verdict(100.0)
    assert high.verdict == "fail" and "below the floor 100" in high.sentence
    assert high.floor is not None and high.floor.value == pytest.approx(float(torch.quantile(per_example, 0.1)))
    assert high.shown_details["floor_value"] == high.floor.value


def test_floor_on_a_kind_without_per_example_scores_is_refused():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="cannot take a 'floor'"):
        AssociationClaim.model_validate(
            dict(
                id="t",
                statement="s",
                kind="association",
                positions="all",
                metric="jaccard",
                threshold={"at_least": 0.5},
                floor={"quantile": 0.1, "at_least": 0.0},
                left={"kind": "role", "role": "Y"},
                right={"kind": "correct_prob", "above": 0.1},
            )
        )


def independence(resample_at: str, positions: str):
    from circuitcheck.claims.independence import IndependenceClaim

    return IndependenceClaim.model_validate(
        dict(id="i", statement="s", kind="independence", positions=positions, metric="top1_agreement",
             resample={"scheme": "resample_tokens", "positions": resample_at, "seed": 1}, threshold={"at_least": 0.9})
    )


def test_resampling_later_tokens_cannot_change_earlier_predictions(tiny_model):
    assert estimate(tiny_model, independence("late", "Y"))[0] == 1.0  # causal: position 5 never sees 8+


def test_resampling_every_token_changes_predictions(tiny_model):
    est, details = estimate(tiny_model, independence("all", "Y"))
    assert est < 1.0 and details["n_examples"] == N


def test_same_as_previous_selects_repeats():
    from circuitcheck.plan.positions import selection_mask
    from circuitcheck.spec.base import PositionSelection

    tokens = torch.tensor([[3, 3, 4, 4, 4, 5]])
    batch = TokenBatch(tokens, next_tokens_of(tokens), torch.zeros_like(tokens))
    mask = selection_mask(PositionSelection(same_as_previous=True), batch, ())
    assert mask.tolist() == [[False, True, False, True, True, False]]
