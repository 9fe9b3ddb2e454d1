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
from circuitcheck.spec.base import ClaimId, Floor, Strict, Threshold


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
    expect: Literal["holds", "refuted", "known_failure"] = Field(
        default="holds",
        description=(
            "refuted: the hypothesis is expected to be false (seed 003's X1), and the file passes when it fails; "
            "known_failure: a claim that does not reproduce on this model, tracked so that a change shows "
            "(the file passes while it keeps failing)"
        ),
    )
    expect_reason: str | None = Field(default=None, description="Why the claim is expected to fail")

    kind_name: ClassVar[str] = ""
    supports_floor: ClassVar[bool] = False
    """Kinds whose measurements carry per-example scores set this."""

    @model_validator(mode="after")
    def _refutation_has_a_reason(self) -> ClaimFields:
        if self.expect != "holds" and not self.expect_reason:
            raise ValueError(f"a claim with 'expect: {self.expect}' needs an 'expect_reason'")
        return self

    @model_validator(mode="after")
    def _floor_supported(self) -> ClaimFields:
        if self.floor is not None and not self.supports_floor:
            raise ValueError(f"claim kind {self.kind!r} has no per-example scores, so it cannot take a 'floor'")
        return self

    @property
    def metric_name(self) -> str:
        return str(getattr(self, "metric", ""))


class DatasetFields(Strict):
    """The key every dataset stanza has: its ``kind``."""

    kind: str
    kind_name: ClassVar[str] = ""


claim_kinds: Registry[type[ClaimFields]] = Registry("claim kind")
dataset_kinds: Registry[type[DatasetFields]] = Registry("dataset kind")
