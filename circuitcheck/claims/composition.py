"""Composition between two heads (CLAIMS.md F1, Elhage et al. 2021).

score = ||W_OV(writer) @ M(reader)||_F / (||W_OV(writer)||_F ||M(reader)||_F), with M the
reader's W_QK (Q-composition), W_QK^T (K-composition) or W_OV (V-composition). Read from
the weights; the report also gives the mean score of random Gaussian matrices of the same
shapes, the level a score means nothing below.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from circuitcheck.claims.base import ClaimSpec, CompileContext, claim_kind
from circuitcheck.claims.weight_common import ov_matrix, qk_matrix, weight_plan
from circuitcheck.errors import PlanError
from circuitcheck.plan.interventions import ClaimPlan, Measurement
from circuitcheck.spec.components import HeadRef

if TYPE_CHECKING:  # torch is imported where a model is needed: `validate` loads this module without it
    import torch


def composition_score(left: torch.Tensor, right: torch.Tensor) -> float:
    return float((left @ right).norm() / (left.norm() * right.norm()))


def random_level(d_model: int, d_head: int, seed: int = 0, draws: int = 20) -> float:
    import torch

    gen = torch.Generator().manual_seed(seed)

    def low_rank() -> torch.Tensor:
        return torch.randn(d_model, d_head, generator=gen) @ torch.randn(d_head, d_model, generator=gen)

    return sum(composition_score(low_rank(), low_rank()) for _ in range(draws)) / draws


@claim_kind
class CompositionClaim(ClaimSpec):
    """A later head reads what an earlier one writes: the Q-, K- or V-composition score, from the weights."""

    kind: Literal["composition"] = "composition"
    writer: HeadRef = Field(description="The earlier head, 'L.H'")
    reader: HeadRef = Field(description="The later head, 'L.H'")
    mode: Literal["q", "k", "v"]

    def compile(self, ctx: CompileContext) -> ClaimPlan:
        (wl, wh), (rl, rh) = ctx.head_ref(self.writer, "writer"), ctx.head_ref(self.reader, "reader")
        if rl <= wl:
            raise PlanError(
                ctx.path + ("reader",),
                f"the reader {self.reader} must sit in a later layer than the writer {self.writer}",
            )
        model = ctx.model

        def measure() -> Measurement:
            left = ov_matrix(model, wl, wh)
            right = {"q": qk_matrix(model, rl, rh), "k": qk_matrix(model, rl, rh).T, "v": ov_matrix(model, rl, rh)}[
                self.mode
            ]
            score = composition_score(left, right)
            chance = random_level(int(model.cfg.d_model), int(model.cfg.d_head))
            found = (
                f"{self.mode.upper()}-composition of {self.reader} on {self.writer}: {score:.4f} (random matrices: "
                f"{chance:.4f})"
            )
            return Measurement(score, found, {"random_level": chance}, exact=True)

        return weight_plan(
            self.id, self.kind, (f"{self.mode.upper()}-composition: {self.writer} -> {self.reader}",), measure
        )
