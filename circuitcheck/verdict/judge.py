"""Result -> Verdict: compare each estimate with its threshold."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

from circuitcheck.run.execute import ClaimResult

Outcome = Literal["pass", "fail"]


@dataclass(frozen=True)
class Verdict:
    claim_id: str
    kind: str
    statement: str
    verdict: Outcome
    estimate: float
    threshold: str
    metric: str
    sentence: str
    details: dict[str, Any]
    seed_figure: str | None
    seconds: float


def judge(spec_claim: Any, result: ClaimResult) -> Verdict:
    m = result.measurement
    ok = not math.isnan(m.estimate) and spec_claim.threshold.passes(m.estimate)
    outcome: Outcome = "pass" if ok else "fail"
    relation = "meets" if ok else "misses"
    sentence = f"{m.found}. Estimate {m.estimate:.4g} {relation} the threshold {spec_claim.threshold}."
    return Verdict(
        claim_id=spec_claim.id,
        kind=spec_claim.kind,
        statement=spec_claim.statement,
        verdict=outcome,
        estimate=m.estimate,
        threshold=str(spec_claim.threshold),
        metric=spec_claim.metric_name,
        sentence=sentence,
        details=dict(m.details),
        seed_figure=spec_claim.seed_figure,
        seconds=result.seconds,
    )
