"""Activation patching: clean activations of components, patched into a corrupted run.

estimate = fraction recovered = (M_patched - M_corrupted) / (M_clean - M_corrupted),
scored against the *clean* next tokens.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Literal

from pydantic import Field

from circuitcheck.claims.base import ClaimSpec, CompileContext, claim_kind, sequence_sums
from circuitcheck.claims.corruption import Corruption, corrupt_tokens
from circuitcheck.plan.components import resolve_components
from circuitcheck.plan.interventions import ClaimOutputs, ClaimPlan, HookEdit, Measurement, Variant, reads
from circuitcheck.plan.positions import ALL
from circuitcheck.spec.components import ComponentRef
from circuitcheck.spec.references import MetricName, Selection
from circuitcheck.stats import Fraction, SequenceStats, Totals, safe_ratio

if TYPE_CHECKING:  # torch is imported where a model is needed: `validate` loads this module without it
    import torch


__all__ = ["ActivationPatchingClaim", "Corruption", "corrupt_tokens", "fraction_recovered"]


def fraction_recovered(t: Totals) -> torch.Tensor:
    clean, corrupted, patched = (t[k] / t["n"] for k in ("clean", "corrupted", "patched"))
    return safe_ratio(patched - corrupted, clean - corrupted)


RECOVERED = Fraction(lambda s: (s["patched"] - s["corrupted"], s["clean"] - s["corrupted"], s["n"]))
"""The fraction recovered, as a fraction of the corruption's effect over scored positions (for its interval):
value patching can recover everything in a few sequences and nothing in the rest."""


@claim_kind
class ActivationPatchingClaim(ClaimSpec):
    """Clean activations of ``patch``, patched into a corrupted run, restore ``metric``: the fraction recovered."""

    # The kind's reference (`circuitcheck docs KIND`): exact estimate, interval, a worked example, traps.
    formula = """\
M_run = (sum of the metric over the scored positions of run) / (number of scored positions)
  (scored against the CLEAN next tokens)
  clean: the clean run; corrupted: the corruption's input (resample_tokens: the tokens at corruption.positions
    replaced, seeded, by other tokens; refill: a prompts dataset's slots refilled with fresh words);
  patched: the corrupted run with the clean activations of `patch` written back at `patch_at`
estimate = (M_patched - M_corrupted) / (M_clean - M_corrupted)   (fraction recovered; 1: all of it)
"""
    example = """\
- id: X-patching-values
  statement: Patching back only the value path at X recovers little of the completion at Y.
  kind: activation_patching
  corruption: {scheme: resample_tokens, positions: X, seed: 5}
  patch: [blocks.0.attn.hook_v]
  patch_at: X
  positions: Y
  metric: correct_prob
  threshold: {at_most: 0.25}
"""
    resamples = (
        "Sequences: a percentile bootstrap (statistics.bootstrap resamples, seeded) draws sequences with replacement "
        "and recomputes the estimate from the drawn sequences' totals, every numerator and denominator from the same "
        "draw. The estimate is a fraction of the corruption's effect, so the interval also holds Wilson's score "
        "interval for it over the scored positions (design-effect adjusted for positions that cluster by "
        "sequence): when a few sequences recover everything and the rest nothing, a small sample often draws none "
        "of them, and the bootstrap alone collapses near 0."
    )
    traps = (
        "Undefined (null, fails) when the corruption does not change the metric (M_clean = M_corrupted).",
        "The ratio is not clipped: patching can overshoot (above 1) or make things worse (below 0).",
        "Patching every path from the corrupted tokens to the scored positions restores everything by construction "
        "and is refused as vacuous.",
    )

    kind: Literal["activation_patching"] = "activation_patching"
    supports_floor: ClassVar[bool] = True
    corruption: Corruption
    patch: list[ComponentRef] = Field(min_length=1, description="Components whose clean activations are patched in")
    patch_at: Selection = Field(default=ALL, description="Positions where clean activations are patched in")
    positions: Selection = Field(description="Positions where the metric is measured")
    metric: MetricName

    def compile(self, ctx: CompileContext) -> ClaimPlan:
        metric = ctx.metric(self.metric)
        mask = ctx.scored(self.positions)
        at = ctx.selection(self.patch_at, "patch_at")
        key = f"{self.id}:corrupted"
        ctx.inputs[key] = self.corruption.tokens(ctx, "corruption")
        sites = resolve_components(ctx.model, self.patch, ctx.path + ("patch",))
        variants = {
            "corrupted": Variant(input=key),
            "patched": Variant(input=key, edits=tuple(HookEdit(s, at, "clean") for s in sites)),
        }

        def score(out: ClaimOutputs) -> Measurement:
            per_seq = {"n": mask.sum(1).double(), "clean": sequence_sums(out, None, metric, mask)}
            per_seq |= {role: sequence_sums(out, role, metric, mask) for role in variants}
            stats = SequenceStats(per_seq, fraction_recovered, RECOVERED)
            t = {k: float(v) / float(per_seq["n"].sum()) for k, v in stats.totals().items()}
            estimate = stats.estimate()
            found = (
                f"corrupting {self.corruption.where} moved {self.metric} from {t['clean']:.4f} to "
                f"{t['corrupted']:.4f}; "
                f"patching {', '.join(map(str, self.patch))} back gave {t['patched']:.4f}: {estimate:.3f} recovered"
            )
            if estimate != estimate:
                found += " (undefined: the corruption does not change the metric)"
            details = {
                "metric_clean": t["clean"],
                "metric_corrupted": t["corrupted"],
                "metric_patched": t["patched"],
                "n_examples": int(mask.sum()),
                "n_sequences": int(mask.any(1).sum()),
            }
            patched = out.scores("patched", metric, mask).double()
            per_example = (patched - t["corrupted"]) / (t["clean"] - t["corrupted"])
            return Measurement(estimate, found, details, stats, per_example, n_examples=int(mask.sum()))

        lines = tuple(f"{role}: {v.describe()}" for role, v in variants.items()) + (
            f"corruption: {self.corruption.describe()}",
            f"score {self.metric} at '{self.positions}' ({int(mask.sum())} positions) against clean next tokens",
        )
        return ClaimPlan(
            claim_id=self.id, kind=self.kind, variants=variants, captures=frozenset(), describe=lines, score=score,
            reads=reads([None, *variants], [metric], mask),
        )
