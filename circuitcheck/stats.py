"""Per-sequence sufficient statistics: the bridge from a run to honest uncertainty.

A claim reports additive per-sequence totals (metric sums, counts, set sizes) and a
function from totals to its estimate. The point estimate applies the function to
the grand totals; a bootstrap resamples *sequences* (positions of one sequence are
correlated, so they move together) and applies it to resampled totals, which keeps
the numerator and denominator of ratio estimates paired. The interval
(:meth:`SequenceStats.interval`) is the bootstrap's percentile interval, widened, for an
estimate that is a fraction of units (:class:`Fraction`), to hold Wilson's bound for it.

A leaf below every stage that uses it (claims, verdicts). Claim modules import it when
``circuitcheck validate`` loads them, so torch is imported inside the functions that compute.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

Totals = dict[str, "torch.Tensor"]

# Entries (resamples x sequences) of one bootstrap block. Its draws (int64) and weights (float64) take
# 32 MB each at 2**22 entries, whatever the number of sequences. The suite's sizes (1,000 resamples of
# at most 4,194 sequences) fit in one block: one matmul over the whole weight matrix, the arithmetic of
# the unblocked bootstrap, so the same bits. Larger ones are reduced block by block, and BLAS may round a
# block's matmul differently in the last bits from a whole-matrix one (float64 reassociation only: the
# resampled sequences are the same).
BOOTSTRAP_BLOCK_ENTRIES = 2**22


def per_sequence(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Sum ``values`` (one per True entry of ``mask [n_seqs, seq]``) into one total per sequence."""
    import torch

    rows = mask.nonzero()[:, 0]
    return torch.zeros(mask.shape[0], dtype=torch.float64).index_add_(0, rows, values.double())


@dataclass(frozen=True)
class Interval:
    """A confidence interval, and what set it: ``percentile`` (the bootstrap), or ``wilson`` when a
    :class:`Fraction`'s bound over ``units`` units was wider than the bootstrap."""

    low: float
    high: float
    method: str
    units: float | None = None


@dataclass(frozen=True)
class Fraction:
    """An estimate that is ``sum(part) / sum(whole)`` over sequences, where each unit (a counted event, or
    a scored position) keeps between none and all of its share of the whole: events of a subset over the
    events of a set (precision, recall, Jaccard); an effect recovered or retained over the whole effect.

    ``parts`` maps the per-sequence values to per-sequence ``(part, whole, units)``: linear combinations
    of them (so they add up to the totals the estimate divides).

    Why it matters: such a fraction is a mean of per-unit fractions in [0, 1], whose variance is at most
    ``p (1 - p)`` per unit. A bootstrap sees only the units drawn; when a rare kind of unit decides the
    estimate (patching recovers everything in 1.7% of sequences and nothing elsewhere) or every drawn unit
    agreed (all 18 events in both sets), it collapses to a point that misses the truth. The bound does not.
    """

    parts: Callable[[Totals], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]

    def per_unit(self, per_seq: Totals) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        part, whole, units = self.parts({k: v.double() for k, v in per_seq.items()})
        return part, whole, units


@dataclass(frozen=True)
class SequenceStats:
    """``per_seq`` values are ``[n_seqs]`` or ``[n_seqs, k]`` (a vector of totals per sequence)."""

    per_seq: dict[str, torch.Tensor]
    statistic: Callable[[Totals], torch.Tensor]
    fraction: Fraction | None = None
    """Set when the estimate is a bounded fraction (:class:`Fraction`): its interval then also covers what
    the number of units allows (:func:`fraction_interval`)."""

    def totals(self) -> Totals:
        return {k: v.double().sum(0) for k, v in self.per_seq.items()}

    def estimate(self) -> float:
        return float(self.statistic(self.totals()))

    def bootstrap(self, n_resamples: int, seed: int) -> torch.Tensor:
        """``n_resamples`` estimates on sequences drawn with replacement (seeded).

        Resamples are drawn and reduced in blocks of rows (:data:`BOOTSTRAP_BLOCK_ENTRIES`), so memory
        is bounded by the block, not by ``n_resamples x n_seqs``. On CPU, drawing ``(a, n)`` then ``(b, n)``
        integers from one generator gives the same numbers as one ``(a + b, n)`` draw, so the resampled
        sequences do not depend on the block size. The statistic is applied once, to all the totals.
        """
        import torch

        n = len(next(iter(self.per_seq.values())))
        gen = torch.Generator().manual_seed(seed)
        return self.statistic(_resampled_totals({k: v.double() for k, v in self.per_seq.items()}, n_resamples, n, gen))

    def interval(self, n_resamples: int, seed: int, confidence: float) -> Interval:
        """The estimate's two-sided ``confidence`` interval: the percentile interval of ``n_resamples``
        resamples of sequences (seeded; NaN when more than a tenth of them are undefined), and for a
        :class:`Fraction` the smallest interval holding both it and :func:`fraction_interval`."""
        lo, hi = percentile_interval(self.bootstrap(n_resamples, seed), confidence)
        if self.fraction is None or math.isnan(lo):
            return Interval(lo, hi, "percentile")
        bound = fraction_interval(self.fraction.per_unit(self.per_seq), confidence)
        if bound is None or (bound.low >= lo and bound.high <= hi):
            return Interval(lo, hi, "percentile")
        return Interval(min(lo, bound.low), max(hi, bound.high), bound.method, bound.units)


def _resampled_totals(values: Totals, n_resamples: int, n: int, gen: torch.Generator) -> Totals:
    """Totals of each resample of ``n`` sequences: a row of weights counts how often it drew each sequence."""
    import torch

    rows = max(1, min(n_resamples, BOOTSTRAP_BLOCK_ENTRIES // max(n, 1)))
    # Every block reuses these buffers: fresh ~32 MB tensors per block fragmented the heap (RSS grew by
    # ~16 MB a block at 80,000 sequences). ``random_`` is what ``randint`` calls on a fresh tensor.
    draws = torch.empty(rows, n, dtype=torch.int64)
    weights = torch.empty(rows, n, dtype=torch.float64)
    ones = torch.ones((), dtype=torch.float64).expand(rows, n)  # counts without a rows x n tensor of ones
    parts = []
    # At least one (possibly empty) block, so that zero resamples still give the statistic's shape.
    for start in range(0, max(n_resamples, 1), rows):
        size = min(rows, n_resamples - start)
        block = draws[:size].random_(0, n, generator=gen)
        counts = weights[:size].zero_().scatter_add_(1, block, ones[:size])
        parts.append({k: counts @ v for k, v in values.items()})
    if len(parts) == 1:
        return parts[0]
    return {k: torch.cat([part[k] for part in parts]) for k in values}


def safe_ratio(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """``num / den``, NaN where the denominator vanishes (an undefined estimate, never inf)."""
    import torch

    ok = den.abs() > 1e-12
    return torch.where(ok, num / torch.where(ok, den, torch.ones_like(den)), torch.full_like(num, float("nan")))


def holm(p_values: list[float]) -> list[float]:
    """Holm-adjusted p-values, in the input order (monotone, capped at 1)."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, (m - rank) * p_values[i])
        adjusted[i] = min(1.0, running)
    return adjusted


def percentile_interval(draws: torch.Tensor, confidence: float) -> tuple[float, float]:
    """The central ``confidence`` share of bootstrap ``draws``; NaN when more than a tenth are undefined."""
    import torch

    finite = draws[torch.isfinite(draws)]
    if len(finite) < 0.9 * len(draws):
        return math.nan, math.nan
    alpha = (1.0 - confidence) / 2.0
    lo, hi = torch.quantile(finite, torch.tensor([alpha, 1.0 - alpha], dtype=finite.dtype)).tolist()
    return lo, hi


def fraction_interval(
    parts: tuple[torch.Tensor, torch.Tensor, torch.Tensor], confidence: float,
) -> Interval | None:
    """A Wilson score interval for a fraction of a whole, over units clustered in sequences (Kish's design
    effect): per-sequence ``(part, whole, units)`` in, the fraction ``p = sum(part) / sum(whole)`` of
    ``N = sum(units)`` units.

    Its variance is the larger of the binomial ``p (1 - p) / N`` (the most that units each keeping between
    none and all of their share can have) and the ratio estimator's variance over
    sequences (the delta method, with the ``n / (n - 1)`` small-sample factor), which is larger when units
    cluster by sequence or fall outside [0, 1]. Wilson's interval with ``N`` divided by that design effect
    stays wide when every drawn unit agreed (p = 0 or 1), where a bootstrap has nothing to resample: with
    no event in N units it reaches ``z**2 / (N + z**2)``, the rule of three's ``3 / N`` at 95%.
    An estimate just outside [0, 1] (noise around none or all of the effect: patching that recovered nothing
    measures -0.0003) is clipped into it for the bound, so a sample that recovered nothing still gets the rule
    of three. None when there are fewer than two sequences, or no whole or no units to divide by.
    """
    import torch

    part, whole, units = parts
    n, total, count = len(part), float(whole.sum()), float(units.sum())
    if n < 2 or abs(total) < 1e-12 or count <= 0:
        return None
    estimate = float(part.sum()) / total
    p = min(max(estimate, 0.0), 1.0)
    binomial = p * (1.0 - p) / count
    clustered = n * float((part - estimate * whole).var()) / total**2
    effective = count if clustered <= binomial or binomial == 0.0 else p * (1.0 - p) / clustered
    z = float(torch.distributions.Normal(0.0, 1.0).icdf(torch.tensor(0.5 + confidence / 2.0, dtype=torch.float64)))
    shrink = 1.0 + z * z / effective
    center = (p + z * z / (2.0 * effective)) / shrink
    half = z / shrink * math.sqrt(p * (1.0 - p) / effective + z * z / (4.0 * effective**2))
    return Interval(center - half, center + half, "wilson", count)
