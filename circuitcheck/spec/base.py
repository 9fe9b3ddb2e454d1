"""Building blocks shared by every part of a hypothesis file."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Strict(BaseModel):
    """Frozen, and unknown keys are errors: a typo never becomes a silent default.

    Numbers are finite: a threshold, margin or tolerance of ``.nan`` or ``.inf``
    cannot be passed or failed meaningfully.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Threshold(Strict):
    """Exactly one bound: ``{at_least: x}``, ``{at_most: x}``, or ``{within: m}`` (an equivalence bound,
    ``|estimate| <= m``: the claim passes only when its whole interval lies inside ``[-m, m]``, fails when
    the interval lies wholly outside, and is inconclusive otherwise)."""

    at_least: float | None = None
    at_most: float | None = None
    within: float | None = Field(default=None, ge=0.0, description="Equivalence margin: |estimate| <= within")

    @model_validator(mode="after")
    def _exactly_one(self) -> Threshold:
        if sum(x is not None for x in (self.at_least, self.at_most, self.within)) != 1:
            raise ValueError("give exactly one of 'at_least', 'at_most' or 'within'")
        return self

    @property
    def value(self) -> float:
        if self.within is not None:
            return self.within
        return self.at_least if self.at_least is not None else float(self.at_most or 0.0)

    @property
    def higher_is_better(self) -> bool:
        """True for ``at_least``: an estimate worsens as it falls (for ``at_most``, as it rises; for
        ``within``, as it moves away from zero, which this flag cannot say: it is False)."""
        return self.at_least is not None

    def passes(self, estimate: float) -> bool:
        if self.at_least is not None:
            return estimate >= self.at_least
        if self.within is not None:
            return abs(estimate) <= self.within
        return estimate <= self.value

    def outside(self, lo: float, hi: float) -> bool:
        """True when the interval ``[lo, hi]`` lies wholly on the failing side."""
        if self.within is not None:
            return hi < -self.within or lo > self.within
        return not self.passes(lo) and not self.passes(hi)

    def __str__(self) -> str:
        if self.within is not None:
            return f"within ±{self.within:g}"
        return f">= {self.at_least:g}" if self.at_least is not None else f"<= {self.value:g}"


class PositionSelection(Strict):
    """Which (sequence, position) pairs a claim looks at.

    ``role`` keeps positions carrying a dataset annotation (trigram: X, Y, Z;
    caesar: A, B, C, space); ``range`` is a half-open ``[start, stop)`` over
    positions (negative counts from the end); ``indices`` lists positions;
    ``same_as_previous`` keeps positions whose token equals the one before;
    ``tokens`` keeps positions holding one of the tokens; ``prefix_contains`` /
    ``prefix_lacks`` keep positions whose causal prefix (itself included) does /
    does not hold one of the tokens. Tokens are ids or names from the dataset's
    vocabulary. Fields combine by intersection, and positions without a target
    are dropped where a metric needs one.
    """

    role: str | None = Field(
        default=None, description="A role the dataset annotates, e.g. X, Y, Z (trigram) or A, B, C (caesar)"
    )
    range: tuple[int, int] | None = None
    indices: list[int] | None = Field(default=None, min_length=1)
    all: bool | None = None
    same_as_previous: bool | None = Field(
        default=None, description="Keep only positions whose token repeats the previous one, e.g. (72, 72, 48)"
    )
    tokens: list[int | str] | None = Field(
        default=None, min_length=1, description="Keep positions holding one of these tokens"
    )
    prefix_contains: list[int | str] | None = Field(
        default=None, min_length=1, description="Keep positions with one of these tokens at or before them"
    )
    prefix_lacks: list[int | str] | None = Field(
        default=None, min_length=1, description="Keep positions with none of these tokens at or before them"
    )

    @model_validator(mode="after")
    def _something(self) -> PositionSelection:
        chosen = (
            self.role,
            self.range,
            self.indices,
            self.all or None,
            self.same_as_previous,
            self.tokens,
            self.prefix_contains,
            self.prefix_lacks,
        )
        if all(x is None for x in chosen):
            raise ValueError(
                "select something: give 'role', 'range', 'indices', 'same_as_previous', 'tokens', "
                "'prefix_contains', 'prefix_lacks' or 'all: true'"
            )
        return self



Seed = Annotated[int, Field(ge=0, lt=2**63)]
"""A random seed: torch's generators take at most 64 bits, so a larger one would fail mid-run."""

ClaimId = Field(pattern=r"^[A-Za-z][A-Za-z0-9_.-]*$", description="Unique id, e.g. T1")


class Statistics(Strict):
    """How uncertainty is estimated: a seeded bootstrap over sequences."""

    bootstrap: int = Field(default=1000, ge=100, le=100_000, description="Bootstrap resamples")
    seed: int = Field(default=0, description="Seed of the bootstrap resampling")
    confidence: float = Field(default=0.95, gt=0.5, lt=1.0, description="Two-sided interval level")


class Floor(Strict):
    """A worst-case bound next to the mean: the ``quantile`` of per-example scores (on the
    estimate's scale) must be at least ``at_least``, e.g. ``{quantile: 0.1, at_least: 0.2}``."""

    quantile: float = Field(gt=0.0, lt=1.0)
    at_least: float
