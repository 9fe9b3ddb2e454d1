"""Association between two per-position predicates (CLAIMS.md T1).

"Previous-token attention above 0.2 at p <=> probability above 0.2 on the
correct next token at p", scored by precision, recall and Jaccard of the two
position sets.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field

from circuitcheck.claims.base import ClaimSpec, CompileContext, claim_kind
from circuitcheck.errors import PlanError
from circuitcheck.metrics import metrics
from circuitcheck.plan.interventions import Capture, ClaimOutputs, ClaimPlan, Measurement, reads
from circuitcheck.spec.base import Strict
from circuitcheck.spec.references import Selection
from circuitcheck.stats import Fraction, SequenceStats, Totals, safe_ratio

if TYPE_CHECKING:  # torch is imported where a model is needed: `validate` loads this module without it
    import torch


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
    """The position carries the dataset annotation ``role`` (e.g. X, Y or Z)."""

    kind: Literal["role"] = "role"
    role: str

    def describe(self) -> str:
        return f"role == {self.role}"


Predicate = Annotated[AttentionAbove | CorrectProbAbove | HasRole, Field(discriminator="kind")]


def evaluate_predicate(pred: Predicate, out: ClaimOutputs, mask: torch.Tensor) -> torch.Tensor:
    """A boolean ``[batch, seq]`` mask where ``pred`` holds, valid inside ``mask`` (the scored positions)."""
    import torch

    batch = out.batch
    if isinstance(pred, HasRole):
        return batch.role_mask(pred.role)
    if isinstance(pred, CorrectProbAbove):
        probs = torch.zeros(mask.shape)
        probs[mask] = out.scores(None, metrics.get("correct_prob"), mask)
        return (probs > pred.above) & mask
    return out.captured[attention_capture(pred).key] > pred.above


def attention_capture(pred: AttentionAbove) -> Capture:
    """What the predicate reads of the attention pattern: ``[c, seq]``, each query's attention on the key
    ``key_offset`` away (0 where that key does not exist), captured chunk by chunk."""

    def reduce(pattern: torch.Tensor) -> torch.Tensor:
        import torch

        pattern = pattern[:, pred.head]
        seq = pattern.shape[-1]
        query = torch.arange(seq)
        key = query + pred.key_offset
        valid = key >= 0
        attn = torch.zeros(pattern.shape[0], seq)
        attn[:, valid] = pattern[:, query[valid], key[valid]]
        return attn

    return Capture(pred.hook(), f"{pred.hook()}: head {pred.head}, key offset {pred.key_offset}", reduce)


SET_STATISTICS: dict[str, Callable[[Totals], torch.Tensor]] = {
    "precision": lambda t: safe_ratio(t["both"], t["left"]),
    "recall": lambda t: safe_ratio(t["both"], t["right"]),
    "jaccard": lambda t: safe_ratio(t["both"], t["union"]),
}
SET_WHOLES = {"precision": "left", "recall": "right", "jaccard": "union"}
"""Each statistic's denominator: the positions of ``both`` are a subset of it, so each is a proportion of events."""


def set_fraction(metric: str) -> Fraction:
    """The statistic as a fraction of events (``both`` out of its denominator's events), for its interval."""
    whole = SET_WHOLES[metric]
    return Fraction(lambda s: (s["both"], s[whole], s[whole]))



@claim_kind
class AssociationClaim(ClaimSpec):
    """Two per-position predicates pick the same positions: their precision, recall or Jaccard index."""

    # The kind's reference (`circuitcheck docs KIND`): exact estimate, interval, a worked example, traps.
    formula = """\
L = scored positions of `positions` where `left` holds; R = those where `right` holds
(counts summed over all sequences before any ratio)
metric: precision  estimate = |L & R| / |L|
metric: recall     estimate = |L & R| / |R|
metric: jaccard    estimate = |L & R| / |L | R|
"""
    example = """\
- id: T1
  statement: Previous-token attention above 0.2 coincides with probability above 0.2 on the correct next token.
  kind: association
  positions: interior
  left: {kind: attention, layer: 0, head: 0, key_offset: -1, above: 0.2}
  right: {kind: correct_prob, above: 0.2}
  metric: jaccard
  threshold: {at_least: 0.8}
"""
    resamples = (
        "Sequences: a percentile bootstrap (statistics.bootstrap resamples, seeded) draws sequences with replacement "
        "and recomputes the estimate from the drawn sequences' totals, every numerator and denominator from the same "
        "draw. The four counts (|L|, |R|, |L & R|, |L | R|) of the drawn sequences are summed, then divided. "
        "The estimate is a proportion of events, so the interval also holds Wilson's score interval for it over "
        "the denominator's events (design-effect adjusted for events that cluster by sequence): with few events, "
        "or all of them agreeing, the bootstrap alone collapses to a point."
    )
    traps = (
        "precision and recall swap when left and right swap: precision is over the LEFT set.",
        "An empty denominator set (no position where left holds, for precision) makes the estimate undefined: the "
        "claim fails.",
        "A position with no key at p + key_offset (position 0 for offset -1) has attention 0 there, so the attention "
        "predicate is false; choose `positions` that start after it.",
    )

    kind: Literal["association"] = "association"
    positions: Selection = Field(description="Selection the two predicates are compared over")
    left: Predicate
    right: Predicate
    metric: Literal["jaccard", "precision", "recall"] = Field(
        description="precision = |L & R| / |L|, recall = |L & R| / |R|, jaccard = |L & R| / |L | R|"
    )

    def compile(self, ctx: CompileContext) -> ClaimPlan:
        captures, reduced = set(), []
        for side in ("left", "right"):
            pred = getattr(self, side)
            if isinstance(pred, AttentionAbove):
                ctx.head(pred.layer, pred.head, (side,))
                captures.add(pred.hook())
                reduced.append(attention_capture(pred))
            if isinstance(pred, HasRole) and pred.role not in ctx.batch.role_names[1:]:
                known = ", ".join(ctx.batch.role_names[1:])
                raise PlanError(
                    ctx.path + (side, "role"), f"this dataset annotates no role {pred.role!r}", f"use one of: {known}"
                )
        mask = ctx.scored(self.positions)

        def score(out: ClaimOutputs) -> Measurement:
            left = evaluate_predicate(self.left, out, mask) & mask
            right = evaluate_predicate(self.right, out, mask) & mask
            per_seq = {
                "left": left.sum(1).double(),
                "right": right.sum(1).double(),
                "both": (left & right).sum(1).double(),
                "union": (left | right).sum(1).double(),
            }
            stats = SequenceStats(per_seq, SET_STATISTICS[self.metric], set_fraction(self.metric))
            t = stats.totals()
            values = {name: float(fn(t)) for name, fn in SET_STATISTICS.items()}
            counts = {k: int(v) for k, v in t.items()}
            found = (
                f"over {int(mask.sum())} positions, '{self.left.describe()}' held at {counts['left']} and "
                f"'{self.right.describe()}' at {counts['right']}; both at {counts['both']} "
                f"(precision {values['precision']:.3f}, recall {values['recall']:.3f}, jaccard {values['jaccard']:.3f})"
            )
            details = values | {"n_positions": int(mask.sum()), "n_sequences": int(mask.any(1).sum())}
            details |= {f"n_{k}": v for k, v in counts.items()}
            return Measurement(values[self.metric], found, details, stats)

        lines = (
            f"clean run only; capture {', '.join(sorted(captures)) or 'logits'}",
            f"compare [{self.left.describe()}] with [{self.right.describe()}] over '{self.positions}' "
            f"({int(mask.sum())} positions); estimate = {self.metric}",
        )
        return ClaimPlan(
            claim_id=self.id, kind=self.kind, variants={}, captures=frozenset(), describe=lines, score=score,
            reduced_captures=tuple(reduced), figure_captures=frozenset(captures),
            reads=reads([None], [metrics.get("correct_prob")], mask),
        )

