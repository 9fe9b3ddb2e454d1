"""The typed verdict of one claim, and the checks that can change it.

:func:`circuitcheck.verdict.stage.judge_file` builds these, one pass per file: interval and
threshold, floor, expectation, Holm across random-circuit p-values, baseline regression. Reports
render them; nothing downstream decides a verdict again.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

from circuitcheck.plan.interventions import RandomCircuits
from circuitcheck.spec.base import Threshold

Outcome = Literal["pass", "fail", "inconclusive"]
Expectation = Literal["holds", "refuted", "known_failure"]


@dataclass(frozen=True)
class FloorCheck:
    """A worst case next to the mean: the ``quantile`` of per-example scores, ``value``, against ``at_least``."""

    quantile: float
    value: float
    at_least: float

    @property
    def held(self) -> bool:
        return self.value >= self.at_least

    def shown(self) -> dict[str, float]:
        return {"floor_quantile": self.quantile, "floor_value": self.value, "floor_at_least": self.at_least}


@dataclass(frozen=True)
class HolmCheck:
    """The claim's random-circuit p-value after Holm's correction over the ``over`` p-values of its file."""

    p_adjusted: float
    over: int

    def shown(self) -> dict[str, float | int]:
        return {"p_adjusted": self.p_adjusted, "p_adjusted_over": self.over}


@dataclass(frozen=True)
class Regression:
    """The estimate against a stored baseline: how far it ``worsened_by`` in the threshold's failing
    direction (infinite when the estimate became undefined), and how far it was ``allowed`` to."""

    estimate: float
    worsened_by: float
    allowed: float

    @property
    def regressed(self) -> bool:
        return self.worsened_by > self.allowed

    def shown(self) -> dict[str, float]:
        return {"estimate": self.estimate, "worsened_by": self.worsened_by, "allowed": self.allowed}


@dataclass(frozen=True)
class Verdict:
    """One claim's estimate, interval and three-way verdict, with every check that shaped it.

    ``details`` are the claim's own numbers, for reports only; what decides the verdict is typed:
    ``n_examples``, ``random`` (circuits of the same size), ``floor``, ``holm`` and ``baseline``.
    """

    claim_id: str
    kind: str
    statement: str
    verdict: Outcome
    estimate: float
    ci_low: float
    ci_high: float
    threshold: Threshold
    metric: str
    sentence: str
    details: dict[str, Any]
    seed_figure: str | None
    seconds: float
    expect: Expectation = "holds"
    measures: str = ""
    """What the estimate is, for tables (``correct_prob, relative drop``); ``metric`` when empty."""
    n_examples: int | None = None
    random: RandomCircuits | None = None
    floor: FloorCheck | None = None
    holm: HolmCheck | None = None
    baseline: Regression | None = None

    @property
    def as_expected(self) -> bool | None:
        """True when the verdict is what the file expects, None when inconclusive; a regression
        against a baseline is never as expected, whatever the file expects."""
        if self.baseline is not None and self.baseline.regressed:
            return False
        if self.verdict == "inconclusive":
            return None
        return (self.verdict == "pass") == (self.expect == "holds")  # refuted and known_failure expect a fail

    @property
    def passed(self) -> bool:
        """The claim came out as the file expects (a file passes when all its claims do)."""
        return self.as_expected is True

    @property
    def shown_details(self) -> dict[str, Any]:
        """The claim's numbers, then the floor's and Holm's: what reports list under "details"."""
        shown = dict(self.details)
        for check in (self.floor, self.holm):
            if check is not None:
                shown |= check.shown()
        return shown

    @property
    def interval_width(self) -> float:
        """``ci_high - ci_low``, or 0 when the interval is undefined."""
        width = self.ci_high - self.ci_low
        return width if math.isfinite(width) else 0.0
