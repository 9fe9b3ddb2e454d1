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
class NullControl:
    """The claim re-run on ``n`` re-initialised copies of its model (seeds ``seed .. seed + n - 1``).

    ``estimates`` and ``verdicts`` hold one entry per copy, None where the claim did not compile on that copy
    (``not_applicable`` says why). The claim is **uninformative** when it passes on a majority of the copies
    (more than half of ``n``): random weights of the same architecture meet its threshold more often than not,
    so meeting it does not single out the trained model. A majority, not any one copy: under "any", adding
    copies would make every claim likelier to be flagged by one lucky draw (a ratio whose denominator is near
    zero on random weights, say), while a majority converges, as ``n`` grows, to "random weights usually pass".
    """

    seed: int
    estimates: tuple[float | None, ...]
    verdicts: tuple[str | None, ...]
    not_applicable: dict[int, str]
    allowed: bool = False
    """The claim sets ``allow_uninformative: true``: marked, but its verdict is not capped."""

    @property
    def n(self) -> int:
        return len(self.estimates)

    @property
    def passes(self) -> int:
        return sum(v == "pass" for v in self.verdicts)

    expect: str = "holds"
    """What the file expects of the claim. Only a claim expected to hold can be uninformative: a refuted or
    known-failure claim that passes on random weights is failing on the trained model for a reason of its own."""

    @property
    def uninformative(self) -> bool:
        return self.expect == "holds" and 2 * self.passes > self.n

    @property
    def finite(self) -> list[float]:
        return [e for e in self.estimates if e is not None and math.isfinite(e)]

    @property
    def mean(self) -> float:
        found = self.finite
        return sum(found) / len(found) if found else math.nan

    @property
    def low(self) -> float:
        return min(self.finite, default=math.nan)

    @property
    def high(self) -> float:
        return max(self.finite, default=math.nan)

    def shown(self) -> dict[str, Any]:
        """The JSON report's ``null_control``."""

        def num(x: float | None) -> float | None:
            return x if x is not None and math.isfinite(x) else None

        return {
            "n": self.n, "seed": self.seed, "estimates": [num(e) for e in self.estimates],
            "verdicts": list(self.verdicts), "mean": num(self.mean), "min": num(self.low), "max": num(self.high),
            "passes": self.passes, "uninformative": self.uninformative, "allow_uninformative": self.allowed,
            "not_applicable": {str(k): v for k, v in self.not_applicable.items()},
        }

    def summary(self) -> str:
        """One line for tables: ``null 0.12 [0.05, 0.2], 0/3 pass``."""
        if not self.finite:
            return f"null n/a (0/{self.n} copies applicable)" if self.not_applicable else f"null undefined ({self.n})"
        spread = f" [{self.low:.3g}, {self.high:.3g}]" if self.n > 1 else ""
        mark = ", UNINFORMATIVE" if self.uninformative else ""
        return f"null {self.mean:.3g}{spread}, {self.passes}/{self.n} pass{mark}"


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
    null: NullControl | None = None
    """The null-model control, when it ran."""

    @property
    def uninformative(self) -> bool:
        """The claim also passed on a re-initialised copy of its model (the null-model control)."""
        return self.null is not None and self.null.uninformative

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
