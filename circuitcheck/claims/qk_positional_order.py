"""The positional QK circuit orders keys by position (CLAIMS.md T4).

"Positional QK scores increase with key position, so the head attends to the
current token by default": for every query position i and adjacent keys j < j+1 <= i,
count how often the score moves in the declared direction.
estimate = that fraction. Read from the weights; no sampling.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from circuitcheck.claims.base import ClaimSpec, CompileContext, claim_kind
from circuitcheck.claims.weight_common import position_inputs, qk_scores, weight_plan
from circuitcheck.plan.interventions import ClaimPlan, Measurement


@claim_kind
class QKPositionalOrderClaim(ClaimSpec):
    """A head's positional QK scores rise (or fall) with key position: the fraction of steps that do."""

    # The kind's reference (`circuitcheck docs KIND`): exact estimate, interval, a worked example, traps.
    formula = """\
P = ln1(W_pos + mean over tokens of W_E)   (each position holding an average token, after the layer's ln1)
S = (P W_Q + b_Q) (P W_K + b_K)^T / sqrt(d_head)        (query position i, key position j)
steps: every query i and adjacent keys (j, j + 1) with j + 1 <= i; step = S[i, j + 1] - S[i, j]
estimate = #{steps > 0 (increasing) or < 0 (decreasing)} / #steps
"""
    example = """\
- id: T4
  statement: Positional QK scores increase with key position.
  kind: qk_positional_order
  layer: 0
  head: 0
  direction: increasing
  threshold: {at_least: 0.9}
"""
    resamples = (
        "Nothing: it is read from the weights, so the interval is the estimate itself."
    )
    traps = (
        "The direct path only: in deeper layers the query and key inputs also carry earlier layers' writes.",
        "A flat step counts as out of order in either direction.",
    )

    kind: Literal["qk_positional_order"] = "qk_positional_order"
    layer: int = Field(ge=0)
    head: int = Field(ge=0)
    direction: Literal["increasing", "decreasing"]

    def compile(self, ctx: CompileContext) -> ClaimPlan:
        import torch  # here, not at the top: `validate` loads this module without torch

        ctx.head(self.layer, self.head)

        def measure() -> Measurement:
            p = position_inputs(ctx.model, self.layer)
            scores = qk_scores(ctx.model, self.layer, self.head, p, p)
            steps = scores[:, 1:] - scores[:, :-1]
            n = scores.shape[0]
            causal = torch.ones(n, n - 1, dtype=torch.bool).tril(-1)  # pairs (j, j+1) with j + 1 <= i
            moved = steps > 0 if self.direction == "increasing" else steps < 0
            rate = float(moved[causal].float().mean())
            found = (
                f"in head {self.layer}.{self.head}'s positional QK circuit, {rate:.1%} of adjacent key steps "
                f"(over {int(causal.sum())}) are {self.direction}"
            )
            details = {"steps": int(causal.sum()), "in_direction": int(moved[causal].sum())}
            return Measurement(rate, found, details, exact=True)

        lines = (f"positional QK of head {self.layer}.{self.head}: fraction of adjacent key steps {self.direction}",)
        return weight_plan(self.id, self.kind, lines, measure)
