"""The file format's extension points: the keys every claim and dataset has, and the registries of kinds.

A claim kind subclasses :class:`circuitcheck.claims.base.ClaimSpec` (which adds ``compile``) and
registers with ``@claim_kind``; a dataset kind subclasses
:class:`circuitcheck.data.registry.DatasetSpec` (which adds ``build``) and registers with
``@dataset_kind``. The registries live here, below both, so that the file model
(:func:`circuitcheck.spec.hypothesis.hypothesis_model`) builds its tagged unions without
importing the stages that compile and run claims, or torch.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, model_validator

from circuitcheck.registry import Registry
from circuitcheck.spec.base import ClaimId, Floor, Strict, Threshold, rule_error


class ClaimFields(Strict):
    """The keys every claim has, whatever its kind."""

    id: str = ClaimId
    statement: str = Field(min_length=1, description="The claim in plain English")
    kind: str
    threshold: Threshold
    seed_figure: str | None = Field(default=None, description="What the reference material measured")
    regression_tolerance: float = Field(
        default=0.0, ge=0.0, description="With --baseline: how far the estimate may worsen beyond its interval width"
    )
    floor: Floor | None = Field(default=None, description="Optional worst-case bound on per-example scores")
    min_effect: float | None = Field(
        default=None, ge=0.0,
        description=(
            "compare: the smallest difference between variants that matters for this claim, on its estimate's "
            "scale; a difference is marked only when its interval excludes zero and its size is at least this "
            "(overrides compare --min-effect)"
        ),
    )
    expect: Literal["holds", "refuted", "known_failure"] = Field(
        default="holds",
        description=(
            "refuted: the hypothesis is expected to be false (seed 003's X1), and the file passes when it fails; "
            "known_failure: a claim that does not reproduce on this model, tracked so that a change shows "
            "(the file passes while it keeps failing)"
        ),
    )
    expect_reason: str | None = Field(default=None, description="Why the claim is expected to fail")
    allow_vacuous: bool = Field(
        default=False,
        description=(
            "Keep a claim the vacuity lint (circuitcheck.spec.vacuity) finds cannot fail, or cannot pass, e.g. a "
            "deliberate sanity check; needs a 'vacuous_reason'"
        ),
    )
    vacuous_reason: str | None = Field(default=None, description="Why a claim that cannot fail is kept")
    allow_uninformative: bool = Field(
        default=False,
        description=(
            "With the null-model control: keep this claim's verdict when it also passes on re-initialised weights "
            "(it is still marked uninformative); otherwise such a claim is capped at inconclusive"
        ),
    )

    kind_name: ClassVar[str] = ""
    supports_floor: ClassVar[bool] = False
    """Kinds whose measurements carry per-example scores set this."""

    @model_validator(mode="after")
    def _refutation_has_a_reason(self) -> ClaimFields:
        if self.expect != "holds" and not self.expect_reason:
            raise rule_error(
                f"a claim with 'expect: {self.expect}' needs an 'expect_reason'",
                "add 'expect_reason: ...' saying why the claim is expected to fail",
            )
        return self

    @model_validator(mode="after")
    def _vacuity_has_a_reason(self) -> ClaimFields:
        if self.allow_vacuous and not self.vacuous_reason:
            raise rule_error(
                "a claim with 'allow_vacuous: true' needs a 'vacuous_reason'",
                "add 'vacuous_reason: ...' saying why a claim that cannot fail belongs among the findings "
                "(a sanity check belongs among the self-checks)",
            )
        if self.vacuous_reason and not self.allow_vacuous:
            raise rule_error("'vacuous_reason' applies only with 'allow_vacuous: true'", "remove 'vacuous_reason'")
        return self

    @model_validator(mode="after")
    def _floor_supported(self) -> ClaimFields:
        if self.floor is not None and not self.supports_floor:
            raise rule_error(
                f"claim kind {self.kind!r} has no per-example scores, so it cannot take a 'floor'",
                "remove 'floor:'; floors apply to kinds with per-example scores, such as ablation",
            )
        return self

    @property
    def metric_name(self) -> str:
        return str(getattr(self, "metric", ""))

    @property
    def measures(self) -> str:
        """What the estimate is, for report tables: the metric, and how the claim turns it into its estimate
        when it says so (``correct_prob, relative drop``: an ``effect`` or ``estimate`` key). A kind whose
        estimate is something else again overrides this."""
        how = next((v for v in (getattr(self, "effect", None), getattr(self, "estimate", None)) if isinstance(v, str)),
                   None)
        metric = self.metric_name
        if how is None:
            return metric
        how = how.replace("_", " ")
        return f"{metric}, {how}" if metric else how


class DatasetFields(Strict):
    """The key every dataset stanza has: its ``kind``."""

    kind: str
    kind_name: ClassVar[str] = ""


claim_kinds: Registry[type[ClaimFields]] = Registry("claim kind")
dataset_kinds: Registry[type[DatasetFields]] = Registry("dataset kind")
