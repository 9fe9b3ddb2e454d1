"""A head's OV circuit copies its source token (CLAIMS.md F3).

The full OV circuit W_E W_V W_O W_U maps a source token to logits. Copying shows as
positive eigenvalues; estimate = the copying score sum(Re λ) / sum(|λ|), in [-1, 1]
(Elhage et al. 2021). LayerNorm is left out, as in the framework paper.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from circuitcheck.claims.base import ClaimSpec, CompileContext, claim_kind
from circuitcheck.claims.weight_common import ov_matrix, weight_plan
from circuitcheck.plan.interventions import ClaimPlan, Measurement
from circuitcheck.spec.components import HeadRef

if TYPE_CHECKING:  # torch is imported where a model is needed: `validate` loads this module without it
    import torch


def copying_score(full_ov: torch.Tensor) -> tuple[float, float]:
    """(sum Re λ / sum |λ|, fraction of eigenvalues with positive real part)."""
    import torch

    eig = torch.linalg.eigvals(full_ov.double())
    return float(eig.real.sum() / eig.abs().sum()), float((eig.real > 0).double().mean())


@claim_kind
class OVCopyingClaim(ClaimSpec):
    """A head's full OV circuit copies tokens: sum(Re λ) / sum(|λ|) of its eigenvalues, from the weights."""

    # The kind's reference (`circuitcheck docs KIND`): exact estimate, interval, a worked example, traps.
    formula = """\
F = W_E W_V W_O W_U  ([d_vocab, d_vocab_out]; LayerNorm left out, as in Elhage et al. 2021)
lambda = the eigenvalues of F
estimate = sum(Re lambda) / sum(|lambda|)    (in [-1, 1]; 1: a pure copying head)
details: the fraction of eigenvalues with a positive real part
"""
    example = """\
- id: F3
  statement: The head's OV circuit copies tokens.
  kind: ov_copying
  head: "0.0"
  threshold: {at_least: 0.5}
"""
    resamples = (
        "Nothing: it is read from the weights, so the interval is the estimate itself."
    )
    traps = (
        "Eigenvalues need a square OV circuit: the input and output vocabularies must be the same size.",
        "LayerNorm is left out, so on a model with strong norms the score is of the unnormalised circuit.",
        "A positive score says copying dominates on average over the vocabulary, not that every token is copied.",
    )

    kind: Literal["ov_copying"] = "ov_copying"
    head: HeadRef = Field(description="'L.H'")

    def compile(self, ctx: CompileContext) -> ClaimPlan:
        layer, head = ctx.head_ref(self.head, "head")
        model = ctx.model

        def measure() -> Measurement:
            score, positive = copying_score(model.W_E @ ov_matrix(model, layer, head) @ model.W_U)
            found = (
                f"head {self.head}'s full OV circuit has copying score {score:.4f}; {positive:.1%} of its eigenvalues "
                "have a positive real part"
            )
            return Measurement(score, found, {"positive_fraction": positive}, exact=True)

        return weight_plan(self.id, self.kind, (f"eigenvalues of W_E W_OV({self.head}) W_U",), measure)
