"""Three-way verdicts from intervals."""

from __future__ import annotations

import math

import pytest
import torch

from circuitcheck.plan.interventions import Measurement
from circuitcheck.run.execute import ClaimResult
from circuitcheck.run.stats import SequenceStats
from circuitcheck.spec.base import Statistics, Threshold
from circuitcheck.verdict.judge import claim_seed, decide, interval, judge

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
    return ClaimResult("c", Measurement(stats.estimate(), "found", {"n_examples": n}, stats), 0.0)


def test_small_samples_near_the_threshold_are_inconclusive_with_a_hint():
    v = judge(Claim(Threshold(at_least=0.5)), noisy_result(0.52, 60), Statistics())
    assert v.verdict == "inconclusive"
    assert v.ci_low < 0.5 < v.ci_high
    assert "scored examples (now 60) would resolve it" in v.sentence


def test_large_samples_far_from_the_threshold_pass():
    v = judge(Claim(Threshold(at_least=0.5)), noisy_result(0.8, 2000), Statistics())
    assert v.verdict == "pass" and v.ci_low > 0.5
    assert "[95% CI" in v.sentence


def test_holm_matches_a_hand_computation():
    from circuitcheck.verdict.multiple import holm

    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])
    assert holm([]) == []
