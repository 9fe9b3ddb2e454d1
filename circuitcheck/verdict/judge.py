"""Result -> Verdict: an estimate, its bootstrap interval, and a three-way verdict.

pass: the whole interval is on the passing side of the threshold; fail: the whole
interval is on the failing side (or the estimate is undefined); inconclusive:
the interval straddles the threshold. An equivalence bound ``within: m`` passes when the
interval lies inside ``[-m, m]`` and fails when it lies wholly outside.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import replace
from typing import Any

import torch

from circuitcheck.run.execute import ClaimResult
from circuitcheck.spec.base import Statistics, Threshold
from circuitcheck.stats import Interval, percentile_interval
from circuitcheck.verdict.verdict import FloorCheck, Outcome, Verdict


def claim_seed(base: int, claim_id: str) -> int:
    """A per-claim bootstrap seed that does not change when claims are reordered."""
    digest = hashlib.sha256(f"{base}:{claim_id}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def interval(draws: torch.Tensor, confidence: float) -> tuple[float, float]:
    """The percentile interval of bootstrap ``draws`` (NaN when more than a tenth are undefined)."""
    return percentile_interval(draws, confidence)


def decide(estimate: float, lo: float, hi: float, threshold: Threshold) -> Outcome:
    if math.isnan(estimate) or math.isnan(lo):
        return "fail"
    if threshold.passes(lo) and threshold.passes(hi):
        return "pass"
    if threshold.outside(lo, hi):
        return "fail"
    return "inconclusive"


def _more_data_hint(estimate: float, lo: float, hi: float, threshold: Threshold, n_seqs: int | None) -> str:
    """What would resolve an inconclusive interval, in sequences (the bootstrap's unit, and the dataset's
    ``n_seqs``): the half-width shrinks as one over the square root of the number of sequences."""
    margin = threshold.margin(estimate)
    half = (hi - lo) / 2.0
    if margin <= 0:
        return " The estimate sits on the threshold; no sample size resolves it."
    if not n_seqs or half <= 0:
        return " More data would narrow the interval."
    needed = math.ceil(n_seqs * (half / margin) ** 2)
    return (
        f" The sample is too small for a margin of {margin:.3g}: about {needed} sequences "
        f"(dataset n_seqs; now {n_seqs}) would resolve it."
    )


def _few_units(bounds: Interval) -> str:
    """Why the interval is wider than the bootstrap's: the estimate is a fraction of ``units`` units."""
    return (
        f" The interval is Wilson's bound for a fraction of {bounds.units:.0f} units (events or scored positions), "
        "wider than the bootstrap's: resampling cannot show a kind of unit the sample happened to miss."
    )


def judge(spec_claim: Any, result: ClaimResult, stats: Statistics) -> Verdict:
    """One claim on its own: interval, threshold, floor, expectation. Holm's correction and the baseline,
    which need the whole file, follow in :func:`circuitcheck.verdict.stage.judge_file`."""
    m = result.measurement
    verdict = against_threshold(spec_claim, result, stats)
    floor = getattr(spec_claim, "floor", None)
    if floor is not None and m.per_example is not None and len(m.per_example):
        worst = float(torch.quantile(m.per_example.double(), floor.quantile))
        verdict = with_floor(verdict, FloorCheck(floor.quantile, worst, floor.at_least))
    return with_expectation(verdict, getattr(spec_claim, "expect_reason", None))


def against_threshold(spec_claim: Any, result: ClaimResult, stats: Statistics) -> Verdict:
    """The bootstrap interval of the claim's estimate against its threshold."""
    m = result.measurement
    estimate = m.estimate
    lo = hi = estimate
    bounds = None
    if m.stats is not None:
        bounds = m.stats.interval(stats.bootstrap, claim_seed(stats.seed, spec_claim.id), stats.confidence)
        lo, hi = bounds.low, bounds.high
    outcome = decide(estimate, lo, hi, spec_claim.threshold)
    ci = f"[{int(stats.confidence * 100)}% CI {lo:.4g}, {hi:.4g}]"
    relation = {"pass": "meets", "fail": "misses", "inconclusive": "is inconclusive against"}[outcome]
    sentence = f"{m.found}. Estimate {estimate:.4g} {ci} {relation} the threshold {spec_claim.threshold}."
    if bounds is not None and bounds.method == "wilson" and not math.isnan(estimate):
        sentence += _few_units(bounds)
    if outcome == "inconclusive":
        n_seqs = len(next(iter(m.stats.per_seq.values()))) if m.stats is not None and m.stats.per_seq else None
        sentence += _more_data_hint(estimate, lo, hi, spec_claim.threshold, n_seqs)
    if math.isnan(estimate):
        sentence += " The estimate is undefined, which counts as a failure."
    return Verdict(
        expect=getattr(spec_claim, "expect", "holds"),
        claim_id=spec_claim.id,
        kind=spec_claim.kind,
        statement=spec_claim.statement,
        verdict=outcome,
        estimate=estimate,
        ci_low=lo,
        ci_high=hi,
        threshold=spec_claim.threshold,
        metric=spec_claim.metric_name,
        measures=getattr(spec_claim, "measures", spec_claim.metric_name),
        sentence=sentence,
        details=dict(m.details),
        seed_figure=spec_claim.seed_figure,
        seconds=result.seconds,
        n_examples=m.n_examples,
        random=m.random,
    )


def with_floor(v: Verdict, floor: FloorCheck) -> Verdict:
    """A worst-case floor that does not hold fails the claim, whatever its interval says."""
    sentence = v.sentence + (
        f" Worst case: the {floor.quantile:.0%} quantile of per-example scores is {floor.value:.4g}, "
        f"{'meeting' if floor.held else 'below'} the floor {floor.at_least:g}."
    )
    return replace(v, floor=floor, sentence=sentence, verdict=v.verdict if floor.held else "fail")


def with_expectation(v: Verdict, reason: str | None) -> Verdict:
    """Say what a refuted or known-failure claim's verdict means for its file (the sentence only:
    :attr:`Verdict.as_expected` reads ``expect``)."""
    if v.verdict == "inconclusive" or v.expect == "holds":
        return v
    if v.expect == "refuted":
        note = f" The file expects this claim to be refuted ({reason}): " + (
            "it was, so the file passes." if v.verdict == "fail" else "it unexpectedly holds, so the file fails."
        )
    else:
        note = f" Known not to reproduce on this model ({reason}): " + (
            "it still fails, as recorded."
            if v.verdict == "fail"
            else "it now holds, so the file fails: update the record."
        )
    return replace(v, sentence=v.sentence + note)
