"""The same metric on this model and another, on the same data (CLAIMS.md T2, variants).

estimate = M(this model) - M(other model), paired: the bootstrap resamples the same
sequences for both, so the interval is that of the difference, not of two means.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from circuitcheck.claims.base import ClaimSpec, CompileContext, claim_kind, sequence_sums
from circuitcheck.errors import PlanError
from circuitcheck.plan.interventions import ClaimOutputs, ClaimPlan, Measurement, reads
from circuitcheck.spec.references import MetricName, Selection
from circuitcheck.stats import SequenceStats, Totals

if TYPE_CHECKING:  # torch is imported where a model is needed: `validate` loads this module without it
    import torch


def difference(t: Totals) -> torch.Tensor:
    return (t["this"] - t["other"]) / t["n"]


@claim_kind
class ModelComparisonClaim(ClaimSpec):
    """The same metric on this model and ``other_model``, on the same data: the paired difference."""

    # The kind's reference (`circuitcheck docs KIND`): exact estimate, interval, a worked example, traps.
    formula = """\
M_this, M_other: the metric of this model and of `other_model` on the same sequences, at the same positions
estimate = (sum over scored positions of M_this - sum of M_other) / (number of scored positions)
(positive: this model scores higher; the sign is not flipped for lower-is-better metrics)
"""
    example = """\
- id: T2
  statement: The attention-only variant is nearly as accurate at Y.
  kind: model_comparison
  other_model: trigram-attn-only
  positions: Y
  metric: accuracy
  threshold: {at_most: 0.1}
"""
    resamples = (
        "Sequences, paired: each bootstrap draw resamples the same sequence indices for both models, so the interval "
        "is that of the difference (shared noise cancels), not of two separate means."
    )
    traps = (
        "For loss or kl a positive difference means this model is worse.",
        "Both models read the file's dataset; other_model must share its vocabulary and context length.",
    )

    kind: Literal["model_comparison"] = "model_comparison"
    other_model: str = Field(description="Zoo name or model directory of the model compared with")
    positions: Selection
    metric: MetricName

    def compile(self, ctx: CompileContext) -> ClaimPlan:
        metric = ctx.metric(self.metric)
        mask = ctx.scored(self.positions)
        from circuitcheck.zoo.load import load  # here, not at the top: it imports torch

        try:
            other = load(self.other_model, ctx.base_dir)
        except Exception as err:  # noqa: BLE001 - any load failure is bad input at this spec path
            raise PlanError(ctx.path + ("other_model",), str(err)) from None
        mine, theirs = ctx.model.cfg, other.model.cfg
        if theirs.d_vocab != mine.d_vocab or theirs.n_ctx < ctx.batch.seq_len:
            raise PlanError(
                ctx.path + ("other_model",),
                f"{other.name!r} (d_vocab {theirs.d_vocab}, n_ctx {theirs.n_ctx}) cannot read this dataset "
                f"(d_vocab {mine.d_vocab}, {ctx.batch.seq_len} positions)",
            )

        def score(out: ClaimOutputs) -> Measurement:
            per_seq = {"n": mask.sum(1).double(), "this": sequence_sums(out, None, metric, mask),
                       "other": sequence_sums(out, "other", metric, mask)}
            stats = SequenceStats(per_seq, difference)
            n = float(per_seq["n"].sum())
            this, that = float(per_seq["this"].sum()) / n, float(per_seq["other"].sum()) / n
            found = (
                f"{self.metric} is {this:.4f} on this model and {that:.4f} on {other.name!r}: difference "
                f"{this - that:+.4f}"
            )
            details = {"metric_this": this, "metric_other": that, "other_model": other.name,
                       "other_checkpoint_sha256": other.checkpoint_sha256, "n_examples": int(n)}
            return Measurement(stats.estimate(), found, details, stats, n_examples=int(n))

        lines = (f"other: {other.name} ({other.checkpoint}), run clean on the same inputs",
                 f"score {self.metric} at '{self.positions}' ({int(mask.sum())} positions); estimate = this - other")
        return ClaimPlan(
            claim_id=self.id, kind=self.kind, variants={}, captures=frozenset(), describe=lines, score=score,
            other_models={"other": other.model}, reads=reads([None, "other"], [metric], mask),
        )
