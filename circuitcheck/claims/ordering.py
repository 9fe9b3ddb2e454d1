"""Ordering claims: other claims' estimates follow a declared order (the T6 ladder).

estimate = the fraction of adjacent pairs in order (1.0: the whole ladder holds). The
interval comes from resampling the same sequences for every rung at once, so it asks
"how often does the whole ladder hold on a resampled dataset", not five separate questions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from circuitcheck.claims.base import ClaimSpec, CompileContext, claim_kind
from circuitcheck.plan.interventions import ClaimPlan, Measurement
from circuitcheck.spec.references import ClaimRef
from circuitcheck.stats import SequenceStats, Totals

if TYPE_CHECKING:  # torch is imported where a model is needed: `validate` loads this module without it
    import torch


@claim_kind
class OrderingClaim(ClaimSpec):
    """Other claims' estimates follow a declared order: the fraction of adjacent steps in that order."""

    # The kind's reference (`circuitcheck docs KIND`): exact estimate, interval, a worked example, traps.
    formula = """\
E_1, ..., E_k: the estimates of the listed claims, in the declared order
d = +1 (increasing) or -1 (decreasing)
estimate = #{i in 1..k-1 : d * (E_{i+1} - E_i) > margin} / (k - 1)   (1.0: the whole ladder holds)
"""
    example = """\
- id: mlp-mean
  statement: With the MLP mean-ablated, the model completes few trigrams.
  kind: replacement
  replace: [{component: mlp0, with: mean}]
  positions: Y
  metric: accuracy
  threshold: {at_most: 0.5}
- id: full
  statement: The full model completes most trigrams.
  kind: replacement
  replace: []
  positions: Y
  metric: accuracy
  threshold: {at_least: 0.8}
- id: ladder
  statement: Accuracy rises from the MLP-ablated model to the full model.
  kind: ordering
  claims: [mlp-mean, full]
  direction: increasing
  threshold: {at_least: 1.0}
"""
    resamples = (
        "The same sequence draw for every rung at once: each bootstrap resample recomputes every rung's estimate from "
        "the same sequences and then the fraction in order, so the interval answers 'how often does the whole ladder "
        "hold', not k - 1 separate questions. If any rung is read from the weights (no bootstrap), the ordering is "
        "exact."
    )
    traps = (
        "Steps are strict: with margin 0, two equal estimates are not in order.",
        "The rungs' own verdicts are judged separately; an ordering can pass while a rung fails its threshold.",
    )

    kind: Literal["ordering"] = "ordering"
    claims: list[ClaimRef] = Field(min_length=2, description="Claim ids, in the declared order")
    direction: Literal["increasing", "decreasing"]
    margin: float = Field(
        default=0.0, ge=0.0, description="A step counts as in order only when it exceeds this ('far less')"
    )

    def compile(self, ctx: CompileContext) -> ClaimPlan:
        sign = 1.0 if self.direction == "increasing" else -1.0

        def derive(found: dict[str, Measurement]) -> Measurement:
            estimates = [found[c].estimate for c in self.claims]
            parts = {c: found[c].stats for c in self.claims}
            stats = None  # a rung read from the weights has no bootstrap: the ladder is then judged as exact
            if all(p is not None for p in parts.values()):
                stats = _joint(parts, sign, self.margin)  # type: ignore[arg-type]
            in_order = sum(sign * (b - a) > self.margin for a, b in zip(estimates, estimates[1:], strict=False))
            rate = in_order / (len(estimates) - 1)
            arrow = " < " if sign > 0 else " > "
            measured = ", ".join(f"{c} {e:.4g}" for c, e in zip(self.claims, estimates, strict=True))
            by = f" (by more than {self.margin:g})" if self.margin else ""
            found_text = (f"declared {arrow.join(self.claims)}; measured {measured}: {in_order} of "
                          f"{len(estimates) - 1} adjacent steps in the declared order{by}")
            details = {"estimates": dict(zip(self.claims, estimates, strict=True))}
            return Measurement(rate, found_text, details, stats, exact=stats is None)

        lines = (
            f"order of the estimates of {', '.join(self.claims)}: {self.direction} by more than {self.margin:g}; uses "
            "their runs, adds none",
        )
        return ClaimPlan(
            claim_id=self.id, kind=self.kind, variants={}, captures=frozenset(), describe=lines, score=_unused,
            depends_on=tuple(self.claims), derive=derive,
        )


def _joint(parts: dict[str, SequenceStats], sign: float, margin: float) -> SequenceStats:
    per_seq = {f"{c}/{k}": v for c, s in parts.items() for k, v in s.per_seq.items()}

    def statistic(t: Totals) -> torch.Tensor:
        import torch

        values = [s.statistic({k: t[f"{c}/{k}"] for k in s.per_seq}) for c, s in parts.items()]
        steps = [(sign * (b - a) > margin).double() for a, b in zip(values, values[1:], strict=False)]
        return torch.stack(steps).mean(0)

    return SequenceStats(per_seq, statistic)


def _unused(out: object) -> Measurement:
    raise AssertionError("ordering claims are derived from other claims, never scored on a run")
