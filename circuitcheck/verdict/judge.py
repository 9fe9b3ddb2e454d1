"""Result -> Verdict: an estimate, its bootstrap interval, and a three-way verdict.

pass: the whole interval is on the passing side of the threshold; fail: the whole
interval is on the failing side (or the estimate is undefined); inconclusive:
the interval straddles the threshold.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any, Literal

import torch

from circuitcheck.run.execute import ClaimResult
from circuitcheck.spec.base import Statistics, Threshold

Outcome = Literal["pass", "fail", "inconclusive"]


@dataclass(frozen=True)
class Verdict:
    claim_id: str
    kind: str
    statement: str
    verdict: Outcome
    estimate: float
    ci_low: float
    ci_high: float
    threshold: str
    metric: str
    sentence: str
    details: dict[str, Any]
    seed_figure: str | None
    seconds: float
    expect: str = "holds"

    @property
    def as_expected(self) -> bool | None:
        """True when the verdict is what the file expects, None when inconclusive."""
        if self.verdict == "inconclusive":
            return None
        return (self.verdict == "pass") == (self.expect == "holds")  # refuted and known_failure expect a fail


def claim_seed(base: int, claim_id: str) -> int:
    """A per-claim bootstrap seed that does not change when claims are reordered."""
    digest = hashlib.sha256(f"{base}:{claim_id}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def interval(draws: torch.Tensor, confidence: float) -> tuple[float, float]:
    finite = draws[torch.isfinite(draws)]
    if len(finite) < 0.9 * len(draws):
        return math.nan, math.nan
    alpha = (1.0 - confidence) / 2.0
    lo, hi = torch.quantile(finite, torch.tensor([alpha, 1.0 - alpha], dtype=finite.dtype)).tolist()
    return lo, hi


def decide(estimate: float, lo: float, hi: float, threshold: Threshold) -> Outcome:
    if math.isnan(estimate) or math.isnan(lo):
        return "fail"
    if threshold.passes(lo) and threshold.passes(hi):
        return "pass"
    if not threshold.passes(lo) and not threshold.passes(hi):
        return "fail"
    return "inconclusive"


def _more_data_hint(estimate: float, lo: float, hi: float, threshold: Threshold, n_examples: int | None) -> str:
    margin = abs(estimate - threshold.value)
    half = (hi - lo) / 2.0
    if margin <= 0:
        return " The estimate sits on the threshold; no sample size resolves it."
    if not n_examples or half <= 0:
        return " More data would narrow the interval."
    needed = math.ceil(n_examples * (half / margin) ** 2)
    return (
        f" The sample is too small for a margin of {margin:.3g}: about {needed} scored examples "
        f"(now {n_examples}) would resolve it."
    )


def judge(spec_claim: Any, result: ClaimResult, stats: Statistics) -> Verdict:
    m = result.measurement
    estimate = m.estimate
    lo = hi = estimate
    if m.stats is not None:
        draws = m.stats.bootstrap(stats.bootstrap, claim_seed(stats.seed, spec_claim.id))
        lo, hi = interval(draws, stats.confidence)
    outcome = decide(estimate, lo, hi, spec_claim.threshold)
    ci = f"[{int(stats.confidence * 100)}% CI {lo:.4g}, {hi:.4g}]"
    relation = {"pass": "meets", "fail": "misses", "inconclusive": "is inconclusive against"}[outcome]
    sentence = f"{m.found}. Estimate {estimate:.4g} {ci} {relation} the threshold {spec_claim.threshold}."
    if outcome == "inconclusive":
        sentence += _more_data_hint(estimate, lo, hi, spec_claim.threshold, m.details.get("n_examples"))
    if math.isnan(estimate):
        sentence += " The estimate is undefined, which counts as a failure."
    details = dict(m.details)
    floor = getattr(spec_claim, "floor", None)
    if floor is not None and m.per_example is not None and len(m.per_example):
        worst = float(torch.quantile(m.per_example.double(), floor.quantile))
        held = worst >= floor.at_least
        details |= {"floor_quantile": floor.quantile, "floor_value": worst, "floor_at_least": floor.at_least}
        sentence += (
            f" Worst case: the {floor.quantile:.0%} quantile of per-example scores is {worst:.4g}, "
            f"{'meeting' if held else 'below'} the floor {floor.at_least:g}."
        )
        if not held:
            outcome = "fail"
    expect = getattr(spec_claim, "expect", "holds")
    if expect == "refuted" and outcome != "inconclusive":
        sentence += (
            f" The file expects this claim to be refuted ({spec_claim.expect_reason}): "
            + ("it was, so the file passes." if outcome == "fail" else "it unexpectedly holds, so the file fails.")
        )
    if expect == "known_failure" and outcome != "inconclusive":
        sentence += (
            f" Known not to reproduce on this model ({spec_claim.expect_reason}): "
            + ("it still fails, as recorded." if outcome == "fail" else "it now holds, so the file fails: update the record.")
        )
    return Verdict(
        expect=expect,
        claim_id=spec_claim.id,
        kind=spec_claim.kind,
        statement=spec_claim.statement,
        verdict=outcome,
        estimate=estimate,
        ci_low=lo,
        ci_high=hi,
        threshold=str(spec_claim.threshold),
        metric=spec_claim.metric_name,
        sentence=sentence,
        details=details,
        seed_figure=spec_claim.seed_figure,
        seconds=result.seconds,
    )
