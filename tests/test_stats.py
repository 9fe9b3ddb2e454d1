"""Sequence-level statistics and their bootstrap."""

from __future__ import annotations

import math
from statistics import NormalDist

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from circuitcheck.stats import Fraction, SequenceStats, fraction_interval, per_sequence, safe_ratio


def mean_stat(t):
    return t["s"] / t["n"]


def test_per_sequence_sums_values_by_row():
    mask = torch.tensor([[True, False, True], [False, False, False], [False, True, False]])
    values = torch.tensor([1.0, 2.0, 5.0])
    assert per_sequence(values, mask).tolist() == [3.0, 0.0, 5.0]


def test_estimate_is_the_pooled_ratio():
    stats = SequenceStats({"s": torch.tensor([1.0, 2.0, 9.0]), "n": torch.tensor([1.0, 1.0, 3.0])}, mean_stat)
    assert stats.estimate() == pytest.approx(12 / 5)


def test_identical_sequences_have_no_spread():
    stats = SequenceStats({"s": torch.full((30,), 2.0), "n": torch.full((30,), 4.0)}, mean_stat)
    draws = stats.bootstrap(200, seed=0)
    assert torch.allclose(draws, torch.full_like(draws, 0.5))


def test_bootstrap_is_seeded():
    gen = torch.Generator().manual_seed(0)
    stats = SequenceStats(
        {"s": torch.rand(50, generator=gen, dtype=torch.float64), "n": torch.ones(50, dtype=torch.float64)}, mean_stat
    )
    assert torch.equal(stats.bootstrap(100, seed=1), stats.bootstrap(100, seed=1))
    assert not torch.equal(stats.bootstrap(100, seed=1), stats.bootstrap(100, seed=2))


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(0, 1), min_size=5, max_size=40), st.integers(0, 1000))
def test_bootstrap_means_stay_within_the_data_range(values, seed):
    v = torch.tensor(values, dtype=torch.float64)
    stats = SequenceStats({"s": v, "n": torch.ones_like(v)}, mean_stat)
    draws = stats.bootstrap(50, seed)
    assert (draws >= v.min() - 1e-12).all() and (draws <= v.max() + 1e-12).all()


def test_bootstrap_spread_matches_the_standard_error():
    gen = torch.Generator().manual_seed(3)
    v = torch.randn(400, generator=gen, dtype=torch.float64)
    stats = SequenceStats({"s": v, "n": torch.ones_like(v)}, mean_stat)
    se = float(v.std() / 400**0.5)
    assert float(stats.bootstrap(2000, seed=0).std()) == pytest.approx(se, rel=0.1)


def test_safe_ratio_is_nan_not_inf():
    out = safe_ratio(torch.tensor([1.0, 2.0]), torch.tensor([0.0, 4.0]))
    assert torch.isnan(out[0]) and out[1] == 0.5


def _events(both: list[float], union: list[float]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    b, u = torch.tensor(both, dtype=torch.float64), torch.tensor(union, dtype=torch.float64)
    return b, u, u


def _wilson(p: float, n: float, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson's score interval, from its textbook form (an independent implementation)."""
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    center = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return center - half, center + half


def test_fraction_interval_is_wilsons_when_sequences_vary_less_than_binomial():
    """15 of 20 events, 3 of 4 in each of 5 sequences: no spread between sequences, so the binomial
    variance rules and the interval is Wilson's for 15/20, [0.5313, 0.8881] (the textbook value)."""
    bound = fraction_interval(_events([3.0] * 5, [4.0] * 5), 0.95)
    assert bound is not None and bound.method == "wilson" and bound.units == 20
    assert (bound.low, bound.high) == pytest.approx((0.531299, 0.888138), abs=1e-6)


def test_fraction_interval_for_one_event_per_sequence_has_the_small_sample_factor():
    """One event per sequence: the delta variance over sequences is p (1 - p) / (n - 1) (its n / (n - 1)
    factor), a little above the binomial, so Wilson's interval over n - 1 units."""
    bound = fraction_interval(_events([1.0] * 15 + [0.0] * 5, [1.0] * 20), 0.95)
    assert bound is not None
    assert (bound.low, bound.high) == pytest.approx(_wilson(0.75, 19), abs=1e-9)


def test_fraction_interval_with_no_event_reaches_the_rule_of_three():
    """No event of 30 (p = 0): the bootstrap has no spread, Wilson's upper end is z**2 / (N + z**2)."""
    bound = fraction_interval(_events([0.0] * 30, [1.0] * 30), 0.95)
    z = NormalDist().inv_cdf(0.975)
    assert bound is not None and bound.low == pytest.approx(0.0, abs=1e-12)
    assert bound.high == pytest.approx(z * z / (30 + z * z))
    assert 0.8 * 3 / 30 < bound.high < 1.3 * 3 / 30


def test_fraction_interval_counts_clustered_events_once_per_sequence():
    """Ten events per sequence that always agree within it: the design effect makes them one unit each,
    n - 1 effective units with the n / (n - 1) small-sample factor (worked by hand: the delta variance is
    p (1 - p) / (n - 1) here)."""
    n, k = 40, 30
    bound = fraction_interval(_events([10.0] * k + [0.0] * (n - k), [10.0] * n), 0.95)
    assert bound is not None
    assert (bound.low, bound.high) == pytest.approx(_wilson(k / n, n - 1), abs=1e-9)
    independent = fraction_interval(_events([1.0] * (10 * k) + [0.0] * (10 * (n - k)), [1.0] * (10 * n)), 0.95)
    assert independent is not None and independent.high - independent.low < 0.5 * (bound.high - bound.low)


def test_fraction_interval_without_units_is_none():
    assert fraction_interval(_events([0.0, 0.0], [0.0, 0.0]), 0.95) is None
    assert fraction_interval(_events([1.0], [1.0]), 0.95) is None


def _jaccard_stats(both: torch.Tensor, union: torch.Tensor) -> SequenceStats:
    return SequenceStats({"both": both, "union": union}, lambda t: safe_ratio(t["both"], t["union"]),
                         Fraction(lambda s: (s["both"], s["union"], s["union"])))


def test_interval_of_a_fraction_holds_the_bootstrap_and_the_bound():
    gen = torch.Generator().manual_seed(0)
    union = torch.randint(0, 4, (30,), generator=gen).double()
    both = torch.minimum(union, torch.randint(0, 4, (30,), generator=gen).double())
    stats = _jaccard_stats(both, union)
    got = stats.interval(500, 7, 0.95)
    draws = stats.bootstrap(500, 7)
    lo, hi = torch.quantile(draws, torch.tensor([0.025, 0.975], dtype=draws.dtype)).tolist()
    bound = fraction_interval((both, union, union), 0.95)
    assert bound is not None
    assert (got.low, got.high) == pytest.approx((min(lo, bound.low), max(hi, bound.high)))
    assert got.low <= stats.estimate() <= got.high


def test_interval_when_every_event_agreed_is_not_a_point():
    """All 18 events in both sets: the bootstrap gives [1, 1]; the interval is Wilson's, and says so."""
    ones = torch.tensor([1.0, 2.0, 0.0] * 6 + [0.0] * 12, dtype=torch.float64)
    stats = _jaccard_stats(ones, ones)
    assert torch.all(stats.bootstrap(200, 0) == 1.0)
    got = stats.interval(200, 0, 0.95)
    assert got.method == "wilson" and got.units == 18 and got.high == pytest.approx(1.0)
    assert got.low == pytest.approx(_wilson(1.0, 18)[0])


def test_interval_without_a_fraction_is_the_percentile_interval():
    gen = torch.Generator().manual_seed(1)
    v = torch.rand(40, generator=gen, dtype=torch.float64)
    stats = SequenceStats({"s": v, "n": torch.ones_like(v)}, mean_stat)
    draws = stats.bootstrap(300, 5)
    got = stats.interval(300, 5, 0.9)
    assert got.method == "percentile"
    assert [got.low, got.high] == torch.quantile(draws, torch.tensor([0.05, 0.95], dtype=draws.dtype)).tolist()


def test_fraction_interval_clips_an_estimate_just_below_zero():
    """Patching that recovered nothing measures a hair below 0; the bound is still the rule of three's."""
    whole = torch.ones(30, dtype=torch.float64)
    part = torch.zeros(30, dtype=torch.float64)
    part[0] = -0.01
    bound = fraction_interval((part, whole, whole), 0.95)
    z = NormalDist().inv_cdf(0.975)
    assert bound is not None and bound.high == pytest.approx(z * z / (30 + z * z))
