"""Three-way verdicts from intervals."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from circuitcheck.plan.interventions import Measurement, RandomCircuits
from circuitcheck.run.execute import ClaimResult
from circuitcheck.spec.base import Statistics, Threshold
from circuitcheck.stats import SequenceStats
from circuitcheck.verdict.baseline import Baseline, against_baseline
from circuitcheck.verdict.judge import claim_seed, decide, interval, judge
from circuitcheck.verdict.multiple import apply_holm
from circuitcheck.verdict.summary import Summary
from circuitcheck.verdict.verdict import Regression, Verdict

AT_LEAST = Threshold(at_least=0.5)
AT_MOST = Threshold(at_most=0.5)


@pytest.mark.parametrize(
    ("lo", "hi", "threshold", "want"),
    [
        (0.6, 0.8, AT_LEAST, "pass"),
        (0.2, 0.4, AT_LEAST, "fail"),
        (0.4, 0.6, AT_LEAST, "inconclusive"),
        (0.5, 0.9, AT_LEAST, "pass"),
        (0.2, 0.4, AT_MOST, "pass"),
        (0.6, 0.8, AT_MOST, "fail"),
        (0.4, 0.6, AT_MOST, "inconclusive"),
    ],
)
def test_decide(lo, hi, threshold, want):
    assert decide((lo + hi) / 2, lo, hi, threshold) == want


def test_undefined_estimates_fail():
    assert decide(math.nan, math.nan, math.nan, AT_LEAST) == "fail"


def test_interval_is_the_percentile_range():
    draws = torch.arange(1001, dtype=torch.float64) / 1000
    lo, hi = interval(draws, 0.95)
    assert lo == pytest.approx(0.025) and hi == pytest.approx(0.975)


def test_interval_of_mostly_undefined_draws_is_undefined():
    draws = torch.tensor([math.nan] * 50 + [1.0] * 50, dtype=torch.float64)
    assert all(math.isnan(x) for x in interval(draws, 0.95))


def test_claim_seed_depends_on_id_not_order():
    assert claim_seed(0, "T1") == claim_seed(0, "T1") != claim_seed(0, "T2")
    assert claim_seed(0, "T1") != claim_seed(1, "T1")


class Claim:
    id, kind, statement, seed_figure, metric_name = "c", "ablation", "s", None, "accuracy"

    def __init__(self, threshold):
        self.threshold = threshold


def noisy_result(mean: float, n: int) -> ClaimResult:
    gen = torch.Generator().manual_seed(0)
    values = (torch.rand(n, generator=gen, dtype=torch.float64) < mean).double()
    stats = SequenceStats({"s": values, "n": torch.ones(n, dtype=torch.float64)}, lambda t: t["s"] / t["n"])
    return ClaimResult("c", Measurement(stats.estimate(), "found", {}, stats, n_examples=n), 0.0)


def test_small_samples_near_the_threshold_are_inconclusive_with_a_hint():
    v = judge(Claim(Threshold(at_least=0.5)), noisy_result(0.52, 60), Statistics())
    assert v.verdict == "inconclusive"
    assert v.ci_low < 0.5 < v.ci_high
    assert "sequences (dataset n_seqs; now 60) would resolve it" in v.sentence


def test_large_samples_far_from_the_threshold_pass():
    v = judge(Claim(Threshold(at_least=0.5)), noisy_result(0.8, 2000), Statistics())
    assert v.verdict == "pass" and v.ci_low > 0.5
    assert "[95% CI" in v.sentence


def test_holm_matches_a_hand_computation():
    from circuitcheck.verdict.multiple import holm

    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])
    assert holm([]) == []


# --- the verdict pass: floor, expectation, Holm and baseline on typed verdicts -----------------------


def verdict_of(outcome="pass", estimate=0.8, threshold=AT_LEAST, expect="holds", **extra) -> Verdict:
    return Verdict(claim_id="c", kind="ablation", statement="s", verdict=outcome, estimate=estimate,
                   ci_low=estimate - 0.1, ci_high=estimate + 0.1, threshold=threshold, metric="m", sentence="Found.",
                   details={}, seed_figure=None, seconds=0.0, expect=expect, **extra)


@pytest.mark.parametrize(
    ("outcome", "expect", "regressed", "want"),
    [
        ("pass", "holds", False, True), ("fail", "holds", False, False), ("inconclusive", "holds", False, None),
        ("fail", "refuted", False, True), ("pass", "refuted", False, False),
        ("fail", "known_failure", False, True), ("pass", "known_failure", False, False),
        ("inconclusive", "known_failure", False, None),
        ("fail", "holds", True, False), ("fail", "known_failure", True, False), ("inconclusive", "holds", True, False),
    ],
)
def test_as_expected_is_decided_in_one_place(outcome, expect, regressed, want):
    baseline = Regression(0.9, 1.0 if regressed else 0.0, 0.5)
    assert verdict_of(outcome, expect=expect, baseline=baseline).as_expected is want


def test_the_summary_counts_by_as_expected():
    found = [verdict_of("pass"), verdict_of("fail", expect="refuted"), verdict_of("fail", expect="known_failure"),
             verdict_of("inconclusive"), verdict_of("fail")]
    assert Summary.of(found).as_dict() == {"total": 5, "passed": 3, "failed": 1, "inconclusive": 1,
                                           "refuted_as_expected": 1, "known_failures": 1, "exit_code": 1}
    assert Summary.of(found[:4]).exit_code == 3 and Summary.of(found[:3]).exit_code == 0


@pytest.mark.parametrize(
    ("threshold", "now", "worse"), [(AT_LEAST, 0.65, 0.15), (AT_MOST, 0.95, 0.15), (AT_MOST, 0.6, -0.2)]
)
def test_the_baseline_direction_comes_from_the_threshold(threshold, now, worse):
    found = against_baseline(verdict_of(estimate=now, threshold=threshold), Baseline(Path("b.json"), {"c": 0.8}), 0.0)
    assert found.baseline is not None and found.baseline.worsened_by == pytest.approx(worse)
    assert found.baseline.allowed == pytest.approx(0.2)  # the interval's width
    assert found.verdict == "pass" and "REGRESSION" not in found.sentence  # worsened by no more than allowed


def test_an_undefined_estimate_regresses_against_a_stored_number():
    found = against_baseline(verdict_of("fail", estimate=math.nan), Baseline(Path("b.json"), {"c": 0.8}), 0.1)
    assert found.verdict == "fail" and found.as_expected is False and found.baseline is not None
    assert found.baseline.worsened_by == math.inf and found.baseline.allowed == 0.1
    assert found.sentence == (
        "Found. REGRESSION: the baseline estimate was 0.8; the estimate is now undefined, "
        "so the claim can no longer be shown to hold."
    )


def test_a_regression_fails_the_claim_and_refuted_claims_are_left_alone():
    stored = Baseline(Path("b.json"), {"c": 0.95})
    found = against_baseline(verdict_of(estimate=0.6), stored, 0.0)
    assert found.verdict == "fail" and found.sentence.endswith(
        "REGRESSION: the baseline estimate was 0.95; it worsened by 0.35, "
        "more than the tolerance plus interval width (0.2)."
    )
    refuted = verdict_of("fail", estimate=0.1, expect="refuted")
    assert against_baseline(refuted, stored, 0.0) is refuted
    assert against_baseline(verdict_of(), Baseline(Path("b.json"), {"c": None}), 0.0).baseline is None


def test_holm_fails_a_pass_that_random_circuits_match():
    pair = [verdict_of(random=RandomCircuits(30, 0.7, 0.04)), verdict_of(random=RandomCircuits(30, 0.1, 0.01))]
    found = apply_holm(pair, {"c": 0.05})
    assert [v.holm.p_adjusted for v in found if v.holm] == pytest.approx([0.04, 0.02])
    assert found[0].verdict == "pass"  # 0.04 < 0.05 after adjustment
    strict = apply_holm([verdict_of(random=RandomCircuits(30, 0.7, 0.04))], {"c": 0.01})[0]
    assert strict.verdict == "fail"
    assert strict.sentence.endswith("Not better than chance at alpha 0.01, so the claim fails.")
    assert strict.shown_details == {"p_adjusted": 0.04, "p_adjusted_over": 1}
