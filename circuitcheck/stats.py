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
        """``n_resamples`` estimates on sequences drawn with replacement (seeded)."""
        import torch

        n = len(next(iter(self.per_seq.values())))
        gen = torch.Generator().manual_seed(seed)
        draws = torch.randint(0, n, (n_resamples, n), generator=gen)
        weights = torch.zeros(n_resamples, n, dtype=torch.float64).scatter_add_(
            1, draws, torch.ones(n_resamples, n, dtype=torch.float64)
        )
        return self.statistic({k: weights @ v.double() for k, v in self.per_seq.items()})


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
