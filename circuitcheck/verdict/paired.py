"""Paired differences between two runs of one claim on the same sequences (model variants).

Both runs saw the same seeded sequences, so the difference is bootstrapped by resampling
the same sequence indices for both: one weight vector per resample is applied to the
per-sequence totals of both variants, and each variant's statistic is taken on its own
resampled totals. Sequence-level noise shared by the two variants cancels, so the interval
is that of the difference, not the (wider) one two separate intervals would suggest.

Variants whose datasets differ (a dataset kind that reads its distribution from the model
card) cannot be paired; :func:`unpaired_difference` bootstraps the two estimates independently.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch

from circuitcheck.plan.interventions import Measurement
from circuitcheck.spec.base import Statistics
from circuitcheck.stats import SequenceStats, Totals
from circuitcheck.verdict.judge import claim_seed, interval

Basis = Literal["paired bootstrap", "unpaired bootstrap", "exact", "undefined"]


@dataclass(frozen=True)
class PairedDifference:
    """``estimate = variant - reference`` with its interval; ``basis`` says where the interval came from:
    a paired or unpaired bootstrap, ``exact`` (weight-based claims, no sampling uncertainty) or ``undefined``."""

    estimate: float
    ci_low: float
    ci_high: float
    basis: Basis

    @property
    def excludes_zero(self) -> bool:
        """Statistical significance: the interval of the difference excludes zero."""
        if math.isnan(self.ci_low) or math.isnan(self.ci_high):
            return False
        return self.ci_low > 0.0 or self.ci_high < 0.0

    def large_enough(self, min_effect: float) -> bool:
        """Practical significance: the difference is at least ``min_effect`` in size (on the estimate's
        scale). Separate from :attr:`excludes_zero`: with many sequences a negligible difference excludes
        zero, and with few a large one may not."""
        return math.isfinite(self.estimate) and abs(self.estimate) >= min_effect

    def differs(self, min_effect: float = 0.0) -> bool:
        """Marked as a difference: its interval excludes zero and its size is at least ``min_effect``."""
        return self.excludes_zero and self.large_enough(min_effect)


def paired_stats(variant: SequenceStats, reference: SequenceStats) -> SequenceStats:
    """One :class:`SequenceStats` whose statistic is ``variant - reference`` on shared resample weights."""
    n_a, n_b = len(next(iter(variant.per_seq.values()))), len(next(iter(reference.per_seq.values())))
    if n_a != n_b:
        raise ValueError(f"paired statistics need the same sequences: {n_a} vs {n_b}")
    per_seq = {f"v/{k}": t for k, t in variant.per_seq.items()} | {f"r/{k}": t for k, t in reference.per_seq.items()}

    def difference(t: Totals) -> torch.Tensor:
        mine = variant.statistic({k: t[f"v/{k}"] for k in variant.per_seq})
        theirs = reference.statistic({k: t[f"r/{k}"] for k in reference.per_seq})
        return mine - theirs

    return SequenceStats(per_seq, difference)


def _without_bootstrap(variant: Measurement, reference: Measurement) -> PairedDifference | None:
    """The difference when no bootstrap is needed or possible; None when both have per-sequence statistics."""
    estimate = variant.estimate - reference.estimate
    if not math.isfinite(estimate):
        return PairedDifference(math.nan, math.nan, math.nan, "undefined")
    if variant.stats is None and reference.stats is None:
        return PairedDifference(estimate, estimate, estimate, "exact")
    if variant.stats is None or reference.stats is None:
        return PairedDifference(estimate, math.nan, math.nan, "undefined")
    return None


def _from_draws(estimate: float, draws: torch.Tensor, stats: Statistics, basis: Basis) -> PairedDifference:
    lo, hi = interval(draws, stats.confidence)
    return PairedDifference(estimate, lo, hi, basis if math.isfinite(lo) else "undefined")


def paired_difference(
    variant: Measurement, reference: Measurement, claim_id: str, stats: Statistics
) -> PairedDifference:
    """The difference of one claim's estimates, with a paired bootstrap interval where both have one.

    The bootstrap seed is the claim's own (as in :func:`circuitcheck.verdict.judge.judge`), so the
    resamples are those each variant's own interval was computed on.
    """
    found = _without_bootstrap(variant, reference)
    if found is not None:
        return found
    assert variant.stats is not None and reference.stats is not None
    draws = paired_stats(variant.stats, reference.stats).bootstrap(stats.bootstrap, claim_seed(stats.seed, claim_id))
    return _from_draws(variant.estimate - reference.estimate, draws, stats, "paired bootstrap")


def unpaired_difference(
    variant: Measurement, reference: Measurement, claim_id: str, stats: Statistics
) -> PairedDifference:
    """The difference with an interval from independent bootstraps of the two estimates (different sequences)."""
    found = _without_bootstrap(variant, reference)
    if found is not None:
        return found
    assert variant.stats is not None and reference.stats is not None
    mine = variant.stats.bootstrap(stats.bootstrap, claim_seed(stats.seed, claim_id))
    theirs = reference.stats.bootstrap(stats.bootstrap, claim_seed(stats.seed, f"{claim_id}/reference"))
    return _from_draws(variant.estimate - reference.estimate, mine - theirs, stats, "unpaired bootstrap")
