"""Replacement claims (attention rules, MLP readouts) and ordering claims, against hand computations."""

from __future__ import annotations

import pytest
import torch

from circuitcheck.claims.ordering import OrderingClaim
from circuitcheck.claims.replacement import ReplacementClaim
from circuitcheck.errors import PlanError
from circuitcheck.run.execute import run_file
from tests.conftest import TINY_CONFIG
from tests.test_claims import make_plan


def replacement(rid, replace, threshold=None):
    return ReplacementClaim.model_validate(
        dict(id=rid, statement="s", kind="replacement", replace=replace, positions="Y", metric="logprob",
             threshold=threshold or {"at_least": -100.0})
    )


def manual_logits(model, tokens, hooks):
    with torch.no_grad():
        return model.run_with_hooks(tokens, fwd_hooks=hooks)


@pytest.mark.parametrize("rule", ["previous", "self", "uniform"])
def test_attention_rules_match_a_hand_built_pattern(tiny_model, rule):
    claim = replacement("r", [{"component": "1.2", "with": rule, "at": "Y"}])
    plan = make_plan(tiny_model, [claim])
    m = run_file(plan).claims[0].measurement
    seq = TINY_CONFIG["n_ctx"]

    def set_pattern(pattern, hook):
        pattern = pattern.clone()
        q = 5  # the "Y" position of the test batch
        row = torch.zeros(seq)
        if rule == "previous":
            row[q - 1] = 1.0
        elif rule == "self":
            row[q] = 1.0
        else:
            row[: q + 1] = 1.0 / (q + 1)
        pattern[:, 2, q] = row
        return pattern

    logits = manual_logits(tiny_model, plan.batch.tokens, [("blocks.1.attn.hook_pattern", set_pattern)])
    mask = plan.masks["Y"]
    want = logits[mask].log_softmax(-1).gather(-1, plan.batch.next_token[mask][:, None]).mean()
    assert m.estimate == pytest.approx(float(want), abs=1e-5)
    assert m.details["top1_agreement"] <= 1.0 and m.details["kl_to_full"] >= 0.0


def test_no_replacement_is_the_full_model(tiny_model):
    m = run_file(make_plan(tiny_model, [replacement("full", [])])).claims[0].measurement
    assert m.estimate == pytest.approx(m.details["metric_full"], abs=1e-6)  # float64 pooled vs float32 mean
    assert m.details["top1_agreement"] == 1.0 and m.details["kl_to_full"] == pytest.approx(0.0, abs=1e-7)


def test_rules_apply_to_heads_only(tiny_model):
    with pytest.raises(PlanError, match="attention rule 'previous' applies to heads only"):
        make_plan(tiny_model, [replacement("r", [{"component": "mlp0", "with": "previous"}])])


def ordering(ids, direction="increasing", margin=0.0):
    return OrderingClaim.model_validate(
        dict(
            id="ladder", statement="s", kind="ordering", claims=ids, direction=direction, margin=margin,
            threshold={"at_least": 1.0},
        )
    )


def test_ordering_margin_demands_a_gap(tiny_model):
    rungs = [
        replacement(
            "everything-zeroed", [{"component": c, "with": "zero"} for c in ("attn0", "mlp0", "attn1", "mlp1")]
        ),
        replacement("full", []),
    ]
    low, high = (r.measurement.estimate for r in run_file(make_plan(tiny_model, rungs)).claims)
    gap = abs(high - low)
    direction = "increasing" if high > low else "decreasing"
    for margin, want in ((gap * 0.9, 1.0), (gap * 1.1, 0.0)):
        result = run_file(make_plan(tiny_model, [*rungs, ordering(["everything-zeroed", "full"], direction, margin)]))
        assert result.claims[2].measurement.estimate == want


def test_ordering_reads_the_other_claims_and_resamples_them_jointly(tiny_model):
    rungs = [
        replacement(
            "everything-zeroed", [{"component": c, "with": "zero"} for c in ("attn0", "mlp0", "attn1", "mlp1")]
        ),
        replacement("full", []),
    ]
    up = run_file(make_plan(tiny_model, [*rungs, ordering(["everything-zeroed", "full"])]))
    down = run_file(make_plan(tiny_model, [*rungs, ordering(["everything-zeroed", "full"], "decreasing")]))
    low, high = (r.measurement.estimate for r in up.claims[:2])
    estimates = (up.claims[2].measurement.estimate, down.claims[2].measurement.estimate)
    assert estimates == ((1.0, 0.0) if high > low else (0.0, 1.0))
    stats = up.claims[2].measurement.stats
    assert stats is not None
    assert set(stats.per_seq) == {"everything-zeroed/n", "everything-zeroed/replaced", "full/n", "full/replaced"}
    draws = stats.bootstrap(200, seed=0)
    assert set(draws.unique().tolist()) <= {0.0, 1.0}


def test_ordering_refuses_unknown_ids(write_yaml):
    from circuitcheck.errors import SpecErrors
    from circuitcheck.spec.hypothesis import load_hypothesis
    from tests.conftest import VALID_FILE

    text = VALID_FILE + """  - id: ladder
    statement: s
    kind: ordering
    claims: [T8, nope]
    direction: increasing
    threshold: {at_least: 1.0}
"""
    with pytest.raises(SpecErrors, match=r"claims.1.claims.1: unknown claim id 'nope'"):
        load_hypothesis(write_yaml(text))


@pytest.mark.parametrize("how", ["median", "mean", "at_mean_input"])
def test_jacobian_fit_recovers_a_linear_map(how):
    from circuitcheck.run.linearize import fit_jacobian

    gen = torch.Generator().manual_seed(0)
    a, c = torch.randn(5, 4, generator=gen), torch.randn(5, generator=gen)
    j, b = fit_jacobian(lambda x: x @ a.T + c, torch.randn(30, 4, generator=gen), how)
    assert torch.allclose(j, a, atol=1e-5) and torch.allclose(b, c, atol=1e-5)


def test_jacobian_of_the_mlp_matches_finite_differences(tiny_model):
    from circuitcheck.run.linearize import fit_jacobian, mlp_function

    fn = mlp_function(tiny_model, 1)
    x = torch.randn(1, 16, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    j, _ = fit_jacobian(lambda v: fn(v.float()).double(), x, "at_mean_input")
    eps = 1e-3
    with torch.no_grad():
        columns = [
            (fn((x[0] + eps * e).float()) - fn((x[0] - eps * e).float())).double() / (2 * eps)
            for e in torch.eye(16, dtype=torch.float64)
        ]
    assert torch.allclose(j.double(), torch.stack(columns, 1), atol=2e-3)


def test_linearised_mlp_matches_a_manual_replacement(tiny_model):
    from circuitcheck.run.linearize import fit_jacobian, mlp_function

    claim = replacement("lin", [{"component": "mlp1", "with": "linear", "fit": "Y"}])
    plan = make_plan(tiny_model, [claim])
    m = run_file(plan).claims[0].measurement
    tokens, mask = plan.batch.tokens, plan.masks["Y"]
    with torch.no_grad():
        _, cache = tiny_model.run_with_cache(tokens)
    j, b = fit_jacobian(mlp_function(tiny_model, 1), cache["blocks.1.hook_resid_mid"][mask])
    seen = {}

    def keep(act, hook):
        seen["mid"] = act

    def linear(act, hook):
        return seen["mid"] @ j.T + b

    logits = manual_logits(tiny_model, tokens, [("blocks.1.hook_resid_mid", keep), ("blocks.1.hook_mlp_out", linear)])
    want = logits[mask].log_softmax(-1).gather(-1, plan.batch.next_token[mask][:, None]).mean()
    assert m.estimate == pytest.approx(float(want), abs=1e-4)


def test_linear_needs_fit_positions_and_an_mlp(tiny_model):
    with pytest.raises(PlanError, match="needs 'fit' positions"):
        make_plan(tiny_model, [replacement("r", [{"component": "mlp0", "with": "linear"}])])
    with pytest.raises(PlanError, match="'linear' linearises an MLP"):
        make_plan(tiny_model, [replacement("r", [{"component": "0.1", "with": "linear", "fit": "Y"}])])


def test_rowwise_jacobians_equal_per_example_jacobians(tiny_model):
    from circuitcheck.run.linearize import mlp_function, rowwise_jacobians

    fn = mlp_function(tiny_model, 0)
    xs = torch.randn(5, 16, generator=torch.Generator().manual_seed(1))
    with torch.enable_grad():
        want = torch.stack([torch.autograd.functional.jacobian(fn, x) for x in xs])
    torch.testing.assert_close(rowwise_jacobians(fn, xs), want, atol=1e-5, rtol=0)
