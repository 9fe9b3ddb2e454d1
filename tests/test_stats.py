"""Sequence-level statistics and their bootstrap."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from circuitcheck.stats import SequenceStats, per_sequence, safe_ratio


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
