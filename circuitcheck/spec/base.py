"""Building blocks shared by every part of a hypothesis file."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError


class Strict(BaseModel):
    """Frozen, and unknown keys are errors: a typo never becomes a silent default.

    Numbers are finite: a threshold, margin or tolerance of ``.nan`` or ``.inf``
    cannot be passed or failed meaningfully.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


RULE_ERROR = "spec_rule"
"""The pydantic error type of a rule a spec's validator checks; its context holds ``message`` and ``fix``."""


def rule_error(message: str, fix: str) -> PydanticCustomError:
    """A validator's error with the fix the loader prints under it (a plain ValueError has no fix line)."""
    return PydanticCustomError(RULE_ERROR, "{message}", {"message": message, "fix": fix})


class Threshold(Strict):
    """Exactly one bound: ``{at_least: x}``, ``{at_most: x}``, ``{between: [low, high]}`` (a band: the claim
    passes only when its whole interval lies inside ``[low, high]``, fails when the interval lies wholly
    outside it, and is inconclusive otherwise), or ``{within: m}`` (an equivalence bound, ``|estimate| <= m``:
    the band ``[-m, m]``)."""

    at_least: float | None = None
    at_most: float | None = None
    between: tuple[float, float] | None = Field(
        default=None, description="A band [low, high]: pass when the whole interval lies inside it"
    )
    within: float | None = Field(default=None, ge=0.0, description="Equivalence margin: |estimate| <= within")

    @model_validator(mode="after")
    def _exactly_one(self) -> Threshold:
        given = [k for k in ("at_least", "at_most", "between", "within") if getattr(self, k) is not None]
        if len(given) != 1:
            shown = f"got {' and '.join(repr(k) for k in given)}" if given else "got none"
            raise rule_error(
                f"give exactly one of 'at_least', 'at_most', 'between' or 'within' ({shown})",
                "e.g. {at_least: 0.5}, {at_most: 0.1}, {between: [0.4, 0.6]} or {within: 0.05}",
            )
        if self.between is not None and not self.between[0] < self.between[1]:
            low, high = self.between
            raise rule_error(
                f"'between' needs [low, high] with low < high, got [{low:g}, {high:g}]",
                f"write the smaller bound first: [{min(low, high):g}, {max(low, high):g}]"
                if low > high else "for a single value use a narrow band, e.g. [0.49, 0.51]",
            )
        return self

    @property
    def band(self) -> tuple[float, float] | None:
        """``(low, high)`` for a two-sided bound (``between``, or ``within`` as ``[-m, m]``); None otherwise."""
        if self.between is not None:
            return self.between
        if self.within is not None:
            return (-self.within, self.within)
        return None

    @property
    def value(self) -> float:
        """The bound of a one-sided threshold; the margin of ``within``; the low end of ``between``."""
        if self.within is not None:
            return self.within
        if self.between is not None:
            return self.between[0]
        return self.at_least if self.at_least is not None else float(self.at_most or 0.0)

    @property
    def higher_is_better(self) -> bool:
        """True for ``at_least``: an estimate worsens as it falls (for ``at_most``, as it rises; for a band,
        as it moves away from the band's centre, which this flag cannot say: it is False; see
        :meth:`worsened_by`)."""
        return self.at_least is not None

    def passes(self, estimate: float) -> bool:
        if self.at_least is not None:
            return estimate >= self.at_least
        band = self.band
        if band is not None:
            return band[0] <= estimate <= band[1]
        return estimate <= self.value

    def outside(self, lo: float, hi: float) -> bool:
        """True when the interval ``[lo, hi]`` lies wholly on the failing side."""
        band = self.band
        if band is not None:
            return hi < band[0] or lo > band[1]
        return not self.passes(lo) and not self.passes(hi)

    def margin(self, estimate: float) -> float:
        """How far ``estimate`` is from the nearest bound (on either side of it)."""
        band = self.band
        if band is not None:
            return min(abs(estimate - band[0]), abs(estimate - band[1]))
        return abs(estimate - self.value)

    def worsened_by(self, old: float, now: float) -> float:
        """How far ``now`` moved from ``old`` in the failing direction: down for ``at_least``, up for
        ``at_most``, away from the band's centre for ``between`` and ``within``."""
        if self.at_least is not None:
            return old - now
        band = self.band
        if band is not None:
            centre = (band[0] + band[1]) / 2.0
            return abs(now - centre) - abs(old - centre)
        return now - old

    def __str__(self) -> str:
        if self.within is not None:
            return f"within ±{self.within:g}"
        if self.between is not None:
            return f"between {self.between[0]:g} and {self.between[1]:g}"
        return f">= {self.at_least:g}" if self.at_least is not None else f"<= {self.value:g}"


class PositionSelection(Strict):
    """Which (sequence, position) pairs a claim looks at.

    ``role`` keeps positions carrying a dataset annotation (trigram: X, Y, Z;
    caesar: A, B, C, space), or any of a list of them (``[B, C]``); ``range`` is a half-open ``[start, stop)`` over
    positions (negative counts from the end); ``indices`` lists positions;
    ``same_as_previous`` keeps positions whose token equals the one before;
    ``tokens`` keeps positions holding one of the tokens; ``prefix_contains`` /
    ``prefix_lacks`` keep positions whose causal prefix (itself included) does /
    does not hold one of the tokens. Tokens are ids or names from the dataset's
    vocabulary. Fields combine by intersection, and positions without a target
    are dropped where a metric needs one.
    """

    role: str | list[str] | None = Field(
        default=None,
        description="A role the dataset annotates, e.g. X, Y, Z (trigram) or A, B, C (caesar); a list is their "
        "union ([B, C]: positions carrying B or C)",
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
        if self.role is not None and isinstance(self.role, list) and not self.role:
            raise rule_error("'role' lists no role", "list at least one role, e.g. [B, C], or write one: B")
        if all(x is None for x in chosen):
            raise rule_error(
                "select something: this selection has no key that selects positions",
                "give 'role', 'range', 'indices', 'same_as_previous', 'tokens', 'prefix_contains', 'prefix_lacks' "
                "or 'all: true', e.g. {role: Y}",
            )
        return self

    @property
    def roles(self) -> list[str]:
        """The roles ``role`` names (one, or a list: their union); empty when it names none."""
        if self.role is None:
            return []
        return [self.role] if isinstance(self.role, str) else list(self.role)


class RelativeKey(Strict):
    """The key a fixed distance from each query, for attention claims: ``{offset: -1}`` is the previous
    position, ``{offset: 0}`` the query itself. Queries whose key would fall before position 0 are left out."""

    offset: int = Field(description="Key position minus query position (0 or less): -1 is the previous position")

    @model_validator(mode="after")
    def _looks_back(self) -> RelativeKey:
        if self.offset > 0:
            raise rule_error(
                f"a head attends only to positions at or before the query, so a key {self.offset} position(s) "
                "after it gets no attention",
                f"use a negative offset: {{offset: {-self.offset}}} is the key {self.offset} position(s) before",
            )
        return self

    def __str__(self) -> str:
        return f"{{offset: {self.offset}}}"


Seed = Annotated[int, Field(ge=0, lt=2**63)]
"""A random seed: torch's generators take at most 64 bits, so a larger one would fail mid-run."""

ClaimId = Field(pattern=r"^[A-Za-z][A-Za-z0-9_.-]*$", description="Unique id, e.g. T1")


class Statistics(Strict):
    """How uncertainty is estimated: a seeded bootstrap over sequences."""

    bootstrap: int = Field(default=1000, ge=100, le=100_000, description="Bootstrap resamples")
    seed: int = Field(default=0, description="Seed of the bootstrap resampling")
    confidence: float = Field(default=0.95, gt=0.5, lt=1.0, description="Two-sided interval level")


class NullModel(Strict):
    """The null-model control: every claim re-run on ``n`` copies of the model with the same architecture and
    data and re-initialised weights (the architecture's own init), seeded ``seed``, ``seed + 1``, ..."""

    n: int = Field(default=3, ge=1, le=100, description="How many re-initialised copies of the model")
    seed: int = Field(default=0, ge=0, description="Seed of the first copy's initialisation; copy i uses seed + i")


class Controls(Strict):
    """Controls every claim is re-run under (``run --controls`` turns them on with the defaults)."""

    null_model: NullModel = Field(
        default_factory=NullModel,
        description="Re-run every claim on re-initialised copies of the model; one that passes there is uninformative",
    )


class Floor(Strict):
    """A worst-case bound next to the mean: the ``quantile`` of per-example scores (on the
    estimate's scale) must be at least ``at_least``, e.g. ``{quantile: 0.1, at_least: 0.2}``."""

    quantile: float = Field(gt=0.0, lt=1.0)
    at_least: float
