"""Independence: resampling the tokens at some positions leaves the prediction elsewhere unchanged (T7).

estimate = mean of ``metric`` at ``positions`` on the resampled input, compared with the
clean run; ``top1_agreement`` (higher is better) or ``kl`` (lower is better) are the natural choices.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Literal

from pydantic import Field

from circuitcheck.claims.base import ClaimSpec, CompileContext, claim_kind
from circuitcheck.claims.corruption import Corruption
from circuitcheck.plan.interventions import ClaimOutputs, ClaimPlan, Measurement, Variant, reads
from circuitcheck.spec.references import MetricName, Selection
from circuitcheck.stats import SequenceStats, Totals, per_sequence

if TYPE_CHECKING:  # torch is imported where a model is needed: `validate` loads this module without it
    import torch


def _mean(t: Totals) -> torch.Tensor:
    return t["resampled"] / t["n"]


@claim_kind
class IndependenceClaim(ClaimSpec):
    """Resampling the tokens at some positions leaves the prediction at ``positions`` unchanged: ``metric``."""

    # The kind's reference (`circuitcheck docs KIND`): exact estimate, interval, a worked example, traps.
    formula = """\
resampled: the clean tokens with every token at resample.positions replaced (seeded) by a different random token
  (or, with scheme refill, a prompts dataset's listed slots refilled with fresh words)
estimate = (sum over scored positions of metric(resampled run; clean next token, clean logits))
           / (number of scored positions)
  top1_agreement: the fraction of positions whose top prediction is unchanged (higher is better)
  kl: the mean KL(clean || resampled) in nats (lower is better: judge it with at_most)
"""
    example = """\
- id: T7
  statement: Resampling X leaves the top prediction at Y unchanged.
  kind: independence
  resample: {scheme: resample_tokens, positions: X, seed: 13}
  positions: Y
  metric: top1_agreement
  threshold: {at_least: 0.9}
"""
    resamples = (
        "Sequences: a percentile bootstrap (statistics.bootstrap resamples, seeded) draws sequences with replacement "
        "and recomputes the estimate from the drawn sequences' totals, every numerator and denominator from the same "
        "draw."
    )
    traps = (
        "With accuracy or correct_prob the metric is scored against the clean next token, so it measures the task, "
        "not agreement with the clean model; use top1_agreement or kl for 'unchanged'.",
        "If the resampled positions include a scored position's next token, the target is still the clean token.",
        "kl and loss are lower-is-better: a threshold at_least on them asserts the opposite of independence.",
    )

    kind: Literal["independence"] = "independence"
    supports_floor: ClassVar[bool] = True
    resample: Corruption = Field(description="Which tokens are replaced by random other tokens")
    positions: Selection = Field(description="Where the prediction should not change")
    metric: MetricName = Field(description="Compared with the clean run, e.g. top1_agreement or kl")

    def compile(self, ctx: CompileContext) -> ClaimPlan:
        metric = ctx.metric(self.metric)
        mask = ctx.scored(self.positions)
        key = f"{self.id}:resampled"
        ctx.inputs[key] = self.resample.tokens(ctx, "resample")
        variants = {"resampled": Variant(input=key)}

        def score(out: ClaimOutputs) -> Measurement:
            scores = out.scores("resampled", metric, mask)
            stats = SequenceStats({"n": mask.sum(1).double(), "resampled": per_sequence(scores, mask)}, _mean)
            estimate = stats.estimate()
            found = (
                f"{self.resample.action} gave "
                f"{self.metric} {estimate:.4f} against the clean run at '{self.positions}' ({int(mask.sum())} "
                "positions)"
            )
            details = {"n_examples": int(mask.sum()), "n_sequences": int(mask.any(1).sum())}
            return Measurement(estimate, found, details, stats, scores.double(), n_examples=int(mask.sum()))

        lines = (
            f"resampled: {variants['resampled'].describe()}",
            f"{self.resample.describe()}; score {self.metric} "
            f"against the clean run at '{self.positions}' ({int(mask.sum())} positions)",
        )
        return ClaimPlan(
            claim_id=self.id, kind=self.kind, variants=variants, captures=frozenset(), describe=lines, score=score,
            reads=reads(["resampled"], [metric], mask),
        )
