"""Coverage of circuitcheck's intervals where the truth is known exactly, and a smoke run of
scripts/coverage_check.py (which measures the same thing through the pipeline, on the trigram model)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import torch

from circuitcheck.spec.base import Statistics
from circuitcheck.stats import SequenceStats, safe_ratio
from circuitcheck.verdict.judge import claim_seed, interval

REPO = Path(__file__).resolve().parents[1]
REPLICATES = 200
N_SEQS = 300
POSITIONS = 8
P_TRUE = 0.7
"""Each sequence has POSITIONS positions; a sequence's positions share one Bernoulli(p_seq) draw of p_seq
around P_TRUE, so positions within a sequence are correlated (the reason the bootstrap resamples sequences)."""


def _sequences(gen: torch.Generator, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sequence totals of a metric over positions, and of the position counts: a mean of exactly P_TRUE."""
    p_seq = torch.where(torch.rand(n, generator=gen, dtype=torch.float64) < 0.5, P_TRUE - 0.25, P_TRUE + 0.25)
    hits = (torch.rand(n, POSITIONS, generator=gen, dtype=torch.float64) < p_seq[:, None]).double()
    return hits.sum(1), torch.full((n,), float(POSITIONS), dtype=torch.float64)


def _mean_stats(metric: torch.Tensor, count: torch.Tensor) -> SequenceStats:
    return SequenceStats({"metric": metric, "count": count}, lambda t: safe_ratio(t["metric"], t["count"]))


def _coverage(make_stats: Callable[[torch.Generator], SequenceStats], truth: float, stats: Statistics) -> float:
    """Fraction of REPLICATES seeded datasets whose interval (the verdict's: bootstrap, then percentiles)
    contains the truth."""
    covered = 0
    for r in range(REPLICATES):
        gen = torch.Generator().manual_seed(10_000 + r)
        s = make_stats(gen)
        lo, hi = interval(s.bootstrap(stats.bootstrap, claim_seed(r, "synthetic")), stats.confidence)
        covered += lo <= truth <= hi
    return covered / REPLICATES


def test_mean_interval_covers_a_known_truth() -> None:
    """A mean over correlated positions: 200 replicates at n=300 cover the exact mean about 95% of the
    time (binomial sd 1.5%). Resampling positions instead of sequences would ignore the correlation
    (its standard error is about 0.57 of the true one here) and cover about 75%: see the last test."""
    stats = Statistics()
    coverage = _coverage(lambda gen: _mean_stats(*_sequences(gen, N_SEQS)), P_TRUE, stats)
    assert 0.90 <= coverage <= 0.99, coverage


def test_ratio_interval_covers_a_known_truth() -> None:
    """A ratio of means with a correlated numerator and denominator (relative drop): its truth is
    (E[full] - E[ablated]) / E[full] = (0.7 - 0.2) / 0.7 exactly."""
    truth = (P_TRUE - 0.2) / P_TRUE

    def make(gen: torch.Generator) -> SequenceStats:
        full, _ = _sequences(gen, N_SEQS)
        kept = (torch.rand(N_SEQS, POSITIONS, generator=gen, dtype=torch.float64) < 0.2 / P_TRUE).double()
        # ablated = full * Bernoulli(0.2 / 0.7) per position, summed: E = 0.2 per position, paired with full
        hits = (full[:, None] > torch.arange(POSITIONS, dtype=torch.float64)).double()
        ablated = (hits * kept).sum(1)
        return SequenceStats({"full": full, "ablated": ablated},
                             lambda t: safe_ratio(t["full"] - t["ablated"], t["full"]))

    coverage = _coverage(make, truth, Statistics())
    assert 0.90 <= coverage <= 0.99, coverage


def test_resampling_positions_under_covers() -> None:
    """The check can fail: an interval from resampling positions (as if independent) under-covers."""
    stats = Statistics()

    def by_position(gen: torch.Generator) -> SequenceStats:
        metric, _ = _sequences(gen, N_SEQS)
        per_position = (metric[:, None] > torch.arange(POSITIONS, dtype=torch.float64)).double().flatten()
        return _mean_stats(per_position, torch.ones_like(per_position))

    assert _coverage(by_position, P_TRUE, stats) < 0.90


def test_script_tiny_run_ends_with_json() -> None:
    done = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "coverage_check.py"), "--tiny"],
        capture_output=True, text=True, timeout=120, cwd=REPO,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert {"coverage", "passes_at_truth", "bias", "replicates", "truth_n", "mode", "seconds"} <= result.keys()
    assert result["mode"] == "tiny" and result["replicates"] == 3 and result["truth_n"] == 500
    for name, by_n in result["coverage"].items():
        assert set(by_n) == {"30"}, name
        assert 0.0 <= by_n["30"] <= 1.0
