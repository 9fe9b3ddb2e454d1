"""Per-sequence sufficient statistics: the bridge from a run to honest uncertainty.

A claim reports additive per-sequence totals (metric sums, counts, set sizes) and a
function from totals to its estimate. The point estimate applies the function to
the grand totals; a bootstrap resamples *sequences* (positions of one sequence are
correlated, so they move together) and applies it to resampled totals, which keeps
the numerator and denominator of ratio estimates paired.

A leaf below every stage that uses it (claims, verdicts). Claim modules import it when
``circuitcheck validate`` loads them, so torch is imported inside the functions that compute.
"""

from __future__ import annotations

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
class SequenceStats:
    """``per_seq`` values are ``[n_seqs]`` or ``[n_seqs, k]`` (a vector of totals per sequence)."""

    per_seq: dict[str, torch.Tensor]
    statistic: Callable[[Totals], torch.Tensor]

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
