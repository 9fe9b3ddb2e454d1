"""The bootstrap in blocks of resamples: the same resamples as the whole-matrix bootstrap, in bounded memory.

The reference below is the bootstrap as it was before it was blocked (one ``n_resamples x n`` draw).
The resampled sequences must be identical for any block size. Integer-valued totals make every float64
sum exact whatever order BLAS adds in, so with them ``torch.equal`` checks the draws themselves; with
arbitrary floats the results are bit-identical when everything fits in one block (the suite's sizes),
and equal up to float64 reassociation when the matmul is split.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch

from circuitcheck import stats as stats_module
from circuitcheck.stats import SequenceStats, safe_ratio


def whole_matrix_bootstrap(stats: SequenceStats, n_resamples: int, seed: int) -> torch.Tensor:
    """The unblocked bootstrap, copied from circuitcheck.stats before issue 18."""
    n = len(next(iter(stats.per_seq.values())))
    gen = torch.Generator().manual_seed(seed)
    draws = torch.randint(0, n, (n_resamples, n), generator=gen)
    weights = torch.zeros(n_resamples, n, dtype=torch.float64).scatter_add_(
        1, draws, torch.ones(n_resamples, n, dtype=torch.float64)
    )
    return stats.statistic({k: weights @ v.double() for k, v in stats.per_seq.items()})


def ratio(t):
    # Nonlinear across keys: the numerator and denominator of one resample must stay paired.
    return safe_ratio(t["s"], t["n"][..., None] if t["s"].dim() == 2 else t["n"])


def integer_stats(n: int, k: int | None, seed: int = 0) -> SequenceStats:
    gen = torch.Generator().manual_seed(seed)
    shape = (n,) if k is None else (n, k)
    s = torch.randint(-50, 50, shape, generator=gen).double()
    return SequenceStats({"s": s, "n": torch.randint(1, 9, (n,), generator=gen).double()}, ratio)


def float_stats(n: int, k: int | None, seed: int = 0) -> SequenceStats:
    gen = torch.Generator().manual_seed(seed)
    shape = (n,) if k is None else (n, k)
    s = torch.randn(shape, generator=gen, dtype=torch.float64) * 1e3 + 0.1
    return SequenceStats({"s": s, "n": torch.rand(n, generator=gen, dtype=torch.float64) + 0.5}, ratio)


def block_entries(n: int, rows: int) -> int:
    """The constant that makes blocks of ``rows`` resamples of ``n`` sequences."""
    return rows * n


# Blocks of one row cost a Python loop per resample: they run on the smaller sizes only (that loop is the same).
SIZES = [(n, r, rows) for n in (1, 7, 1000, 5000) for r in (1, 999, 1000, 2500) for rows in (1, 7, None)
         if rows != 1 or n * r <= 1_000_000]


@pytest.mark.parametrize(("n", "n_resamples", "rows"), SIZES)
@pytest.mark.parametrize("k", [None, 3])
def test_blocks_draw_the_same_resamples(monkeypatch, n, n_resamples, k, rows):
    if rows is not None:
        monkeypatch.setattr(stats_module, "BOOTSTRAP_BLOCK_ENTRIES", block_entries(n, rows))
    stats = integer_stats(n, k)
    blocked = stats.bootstrap(n_resamples, seed=11)
    assert torch.equal(blocked, whole_matrix_bootstrap(stats, n_resamples, seed=11))


@pytest.mark.parametrize("n", [1, 7, 1000])
@pytest.mark.parametrize("n_resamples", [1, 999, 1000, 2500])
@pytest.mark.parametrize("k", [None, 5])
def test_one_block_is_bit_identical_on_any_values(n, n_resamples, k):
    # The default block holds all of these: the same single matmul as before, so the same bits.
    assert n_resamples * n <= stats_module.BOOTSTRAP_BLOCK_ENTRIES
    stats = float_stats(n, k)
    assert torch.equal(stats.bootstrap(n_resamples, seed=3), whole_matrix_bootstrap(stats, n_resamples, seed=3))


@pytest.mark.parametrize("k", [None, 5])
def test_split_matmul_differs_by_rounding_only(monkeypatch, k):
    monkeypatch.setattr(stats_module, "BOOTSTRAP_BLOCK_ENTRIES", block_entries(5000, 7))
    stats = float_stats(5000, k)
    blocked, whole = stats.bootstrap(1000, seed=5), whole_matrix_bootstrap(stats, 1000, seed=5)
    # Cancellation in a sum can make one entry's relative error large; its error against the scale stays tiny.
    scale = float(whole.abs().max())
    torch.testing.assert_close(blocked, whole, rtol=0.0, atol=1e-12 * scale)


def test_zero_sequences_in_a_resample_count_is_kept():
    # A sequence drawn twice counts twice: the weights are counts, not a mask.
    stats = SequenceStats({"x": torch.eye(7, dtype=torch.float64)}, lambda t: t["x"])
    draws = stats.bootstrap(50, seed=2)
    assert draws.shape == (50, 7)
    assert torch.equal(draws.sum(1), torch.full((50,), 7.0, dtype=torch.float64))
    assert torch.equal(draws, whole_matrix_bootstrap(stats, 50, seed=2))


def test_large_bootstrap_draws_in_bounded_blocks(monkeypatch):
    shapes: list[tuple[int, ...]] = []
    real = torch.Tensor.random_

    def recording(self, *args, **kwargs):
        shapes.append(tuple(self.shape))
        return real(self, *args, **kwargs)

    # randint is empty + random_: recording both catches a whole-matrix draw made either way.
    real_randint = torch.randint

    def recording_randint(*args, **kwargs):
        shapes.append(tuple(args[2]))
        return real_randint(*args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "random_", recording)
    monkeypatch.setattr(torch, "randint", recording_randint)
    n = 80_000
    stats = SequenceStats({"s": torch.ones(n, dtype=torch.float64), "n": torch.ones(n, dtype=torch.float64)}, ratio)
    draws = stats.bootstrap(1000, seed=0)
    assert draws.shape == (1000,)
    assert sum(rows for rows, _ in shapes) == 1000
    assert max(rows * cols for rows, cols in shapes) <= stats_module.BOOTSTRAP_BLOCK_ENTRIES


CHILD = textwrap.dedent(
    """
    import resource, torch
    from circuitcheck.stats import SequenceStats
    torch.set_num_threads(1)
    n = 80_000
    per_seq = {"s": torch.rand(n, dtype=torch.float64), "n": torch.ones(n, dtype=torch.float64)}
    stats = SequenceStats(per_seq, lambda t: t["s"] / t["n"])
    stats.bootstrap(2, seed=0)  # warm up allocator and kernels before the baseline
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    stats.bootstrap(1000, seed=0)
    print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
    """
)


def test_large_bootstrap_peak_memory_stays_small():
    # A fresh process so that the peak is the bootstrap's: the whole-matrix version grew it by ~1.9 GB
    # (int64 draws, float64 ones and weights, 640 MB each); blocks of 2**22 entries need ~65 MB.
    out = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=120, check=True)
    growth_mb = int(out.stdout.strip().splitlines()[-1])
    assert growth_mb < 400, f"peak RSS grew by {growth_mb} MB during a 1000 x 80,000 bootstrap"
