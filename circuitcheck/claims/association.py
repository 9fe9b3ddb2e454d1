"""Association between two per-position predicates (CLAIMS.md T1).

"Previous-token attention above 0.2 at p <=> probability above 0.2 on the
correct next token at p", scored by precision, recall and Jaccard of the two
position sets.
"""

from __future__ import annotations

from typing import Annotated, Literal

import torch
from pydantic import Field

from circuitcheck.claims.base import ClaimSpec, CompileContext, claim_kind
from circuitcheck.errors import PlanError
from circuitcheck.plan.interventions import ClaimOutputs, ClaimPlan, Measurement
from circuitcheck.spec.base import Strict


class AttentionAbove(Strict):
    """Attention from the query at p to the key at ``p + key_offset`` exceeds ``above``."""

    kind: Literal["attention"] = "attention"
    layer: int = Field(ge=0)
    head: int = Field(ge=0)
    key_offset: int = Field(le=0, description="Relative key position; -1 is the previous token")
    above: float = Field(ge=0.0, le=1.0)

    def hook(self) -> str:
        return f"blocks.{self.layer}.attn.hook_pattern"

    def describe(self) -> str:
        return f"attention {self.layer}.{self.head} to p{self.key_offset:+d} > {self.above:g}"


class CorrectProbAbove(Strict):
    """The clean model's probability on the correct next token exceeds ``above``."""

    kind: Literal["correct_prob"] = "correct_prob"
    above: float = Field(ge=0.0, le=1.0)

    def describe(self) -> str:
        return f"P(correct next) > {self.above:g}"


class HasRole(Strict):
    """The position carries the dataset annotation ``role`` (X, Y or Z)."""

    kind: Literal["role"] = "role"
    role: Literal["X", "Y", "Z"]

    def describe(self) -> str:
        return f"role == {self.role}"


Predicate = Annotated[AttentionAbove | CorrectProbAbove | HasRole, Field(discriminator="kind")]


def evaluate_predicate(pred: Predicate, out: ClaimOutputs) -> torch.Tensor:
    """A boolean ``[batch, seq]`` mask where ``pred`` holds."""
    batch = out.batch
    if isinstance(pred, HasRole):
        return batch.role_mask(pred.role)
    if isinstance(pred, CorrectProbAbove):
        targets = batch.next_token.clamp(min=0)
        probs = out.clean_logits.float().softmax(-1).gather(-1, targets[..., None]).squeeze(-1)
        return (probs > pred.above) & (batch.next_token >= 0)
    pattern = out.captured[pred.hook()][:, pred.head]
    seq = pattern.shape[-1]
    query = torch.arange(seq)
    key = query + pred.key_offset
    valid = key >= 0
    attn = torch.zeros(pattern.shape[0], seq)
    attn[:, valid] = pattern[:, query[valid], key[valid]]
    return attn > pred.above


@claim_kind
class AssociationClaim(ClaimSpec):
    kind: Literal["association"] = "association"
    positions: str = Field(description="Selection the two predicates are compared over")
    left: Predicate
    right: Predicate
    metric: Literal["jaccard", "precision", "recall"] = Field(
        description="precision = |L & R| / |L|, recall = |L & R| / |R|, jaccard = |L & R| / |L | R|"
    )

    def compile(self, ctx: CompileContext) -> ClaimPlan:
        cfg = ctx.model.cfg
        captures = set()
        for side in ("left", "right"):
            pred = getattr(self, side)
            if isinstance(pred, AttentionAbove):
                if pred.layer >= cfg.n_layers:
                    raise PlanError(ctx.path + (side, "layer"), f"layer {pred.layer} is out of range: the model has {cfg.n_layers}", f"use 0..{cfg.n_layers - 1}")
                if pred.head >= cfg.n_heads:
                    raise PlanError(ctx.path + (side, "head"), f"head {pred.head} is out of range: layer {pred.layer} has {cfg.n_heads}", f"use 0..{cfg.n_heads - 1}")
                captures.add(pred.hook())
        mask = ctx.scored(self.positions)

        def score(out: ClaimOutputs) -> Measurement:
            left = evaluate_predicate(self.left, out)[mask]
            right = evaluate_predicate(self.right, out)[mask]
            both = int((left & right).sum())
            n_left, n_right = int(left.sum()), int(right.sum())
            union = int((left | right).sum())
            stats = {
                "precision": both / n_left if n_left else float("nan"),
                "recall": both / n_right if n_right else float("nan"),
                "jaccard": both / union if union else float("nan"),
            }
            found = (
                f"over {int(mask.sum())} positions, '{self.left.describe()}' held at {n_left} and "
                f"'{self.right.describe()}' at {n_right}; both at {both} "
                f"(precision {stats['precision']:.3f}, recall {stats['recall']:.3f}, jaccard {stats['jaccard']:.3f})"
            )
            details = stats | {"n_positions": int(mask.sum()), "n_left": n_left, "n_right": n_right, "n_both": both}
            return Measurement(stats[self.metric], found, details)

        lines = (
            f"clean run only; capture {', '.join(sorted(captures)) or 'logits'}",
            f"compare [{self.left.describe()}] with [{self.right.describe()}] over '{self.positions}' "
            f"({int(mask.sum())} positions); estimate = {self.metric}",
        )
        return ClaimPlan(self.id, self.kind, {}, frozenset(captures), lines, score)

