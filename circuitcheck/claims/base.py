"""Claim kinds: one file each, a spec class registered with :func:`claim_kind`.

A claim spec knows how to compile itself into a :class:`ClaimPlan` against a
concrete model and dataset. The engine runs plans; it knows no claim kind.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
from pydantic import Field, model_validator

from circuitcheck.data.batch import TokenBatch
from circuitcheck.errors import PlanError
from circuitcheck.metrics import Metric, metrics
from circuitcheck.plan.interventions import ClaimPlan
from circuitcheck.plan.positions import scored_mask
from circuitcheck.registry import Registry
from circuitcheck.run.stats import per_sequence
from circuitcheck.spec.base import ClaimId, Floor, Strict, Threshold


@dataclass
class CompileContext:
    """What a claim compiles against. ``path`` is the claim's place in the file."""

    model: Any
    batch: TokenBatch
    masks: dict[str, torch.Tensor]
    inputs: dict[str, torch.Tensor]
    path: tuple[str | int, ...]
    card: dict[str, Any] = field(default_factory=dict)
    base_dir: Path | None = None

    def head(self, layer: int, head: int, at: tuple[str | int, ...] = ()) -> None:
        """Refuse a layer or head the model does not have; ``at`` is the spec field holding them."""
        cfg = self.model.cfg
        if not 0 <= layer < cfg.n_layers:
            raise PlanError(self.path + at + ("layer",), f"layer {layer} is out of range: the model has {cfg.n_layers}", f"use 0..{cfg.n_layers - 1}")
        if not 0 <= head < cfg.n_heads:
            raise PlanError(self.path + at + ("head",), f"head {head} is out of range: layer {layer} has {cfg.n_heads}", f"use 0..{cfg.n_heads - 1}")

    def scored(self, selection: str, field: str = "positions") -> torch.Tensor:
        return scored_mask(self.masks, selection, self.batch, self.path + (field,))

    def selection(self, name: str, field: str) -> str:
        if name not in self.masks:
            known = ", ".join(sorted(self.masks))
            raise PlanError(self.path + (field,), f"unknown position selection {name!r}", f"define it under 'positions:' (known: {known})")
        return name

    def metric(self, name: str, field: str = "metric") -> Metric:
        if name not in metrics:
            raise PlanError(self.path + (field,), f"unknown metric {name!r}", f"use one of: {', '.join(metrics.names())}")
        return metrics.get(name)


class ClaimSpec(Strict):
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
    def _refutation_has_a_reason(self) -> ClaimSpec:
        if self.expect != "holds" and not self.expect_reason:
            raise ValueError(f"a claim with 'expect: {self.expect}' needs an 'expect_reason'")
        return self

    @model_validator(mode="after")
    def _floor_supported(self) -> ClaimSpec:
        if self.floor is not None and not self.supports_floor:
            raise ValueError(f"claim kind {self.kind!r} has no per-example scores, so it cannot take a 'floor'")
        return self

    def compile(self, ctx: CompileContext) -> ClaimPlan:
        raise NotImplementedError

    @property
    def metric_name(self) -> str:
        return str(getattr(self, "metric", ""))


claim_kinds: Registry[type[ClaimSpec]] = Registry("claim kind")


def claim_kind(cls: type[ClaimSpec]) -> type[ClaimSpec]:
    """Register a claim spec class under the default of its ``kind`` field."""
    name = cls.model_fields["kind"].default
    cls.kind_name = name
    return claim_kinds.register(name)(cls)


def sequence_sums(metric: Metric, logits: torch.Tensor, out: Any, mask: torch.Tensor) -> torch.Tensor:
    """Per-sequence totals of ``metric`` at ``mask``'s positions (for :class:`SequenceStats`)."""
    return per_sequence(masked_scores(metric, logits, out.batch, mask, out.clean_logits), mask)


def masked_scores(metric: Metric, logits: torch.Tensor, batch: TokenBatch, mask: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
    """Per-example scores of ``metric`` at ``mask``'s positions (flattened)."""
    return metric(logits[mask], batch.next_token[mask], clean[mask])
