"""Activation patching: clean activations of components, patched into a corrupted run.

estimate = fraction recovered = (M_patched - M_corrupted) / (M_clean - M_corrupted),
scored against the *clean* next tokens.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Literal

from pydantic import Field

from circuitcheck.claims.base import ClaimSpec, CompileContext, claim_kind, sequence_sums
from circuitcheck.plan.components import resolve_components
from circuitcheck.plan.interventions import ClaimOutputs, ClaimPlan, HookEdit, Measurement, Variant, reads
from circuitcheck.plan.positions import ALL
from circuitcheck.spec.base import Seed, Strict
from circuitcheck.spec.components import ComponentRef
from circuitcheck.spec.references import MetricName, Selection
from circuitcheck.stats import SequenceStats, Totals, safe_ratio

if TYPE_CHECKING:  # torch is imported where a model is needed: `validate` loads this module without it
    import torch


class Corruption(Strict):
    """``resample_tokens``: each token at ``positions`` becomes a different uniform random token."""

    scheme: Literal["resample_tokens"]
    positions: Selection
    seed: Seed


def corrupt_tokens(tokens: torch.Tensor, mask: torch.Tensor, d_vocab: int, seed: int) -> torch.Tensor:
    import torch

    gen = torch.Generator().manual_seed(seed)
    # Adding 1..d_vocab-1 modulo d_vocab always lands on a different token.
    shift = torch.randint(1, d_vocab, tokens.shape, generator=gen)
    return torch.where(mask, (tokens + shift) % d_vocab, tokens)


def fraction_recovered(t: Totals) -> torch.Tensor:
    clean, corrupted, patched = (t[k] / t["n"] for k in ("clean", "corrupted", "patched"))
    return safe_ratio(patched - corrupted, clean - corrupted)


@claim_kind
class ActivationPatchingClaim(ClaimSpec):
    """Clean activations of ``patch``, patched into a corrupted run, restore ``metric``: the fraction recovered."""

    # The kind's reference (`circuitcheck docs KIND`): exact estimate, interval, a worked example, traps.
    formula = """\
M_run = (sum of the metric over the scored positions of run) / (number of scored positions)
  (scored against the CLEAN next tokens)
  clean: the clean run; corrupted: the tokens at corruption.positions replaced (seeded) by other tokens;
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
        "draw."
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
        where = ctx.masks[ctx.selection(self.corruption.positions, "corruption")]
        key = f"{self.id}:corrupted"
        ctx.inputs[key] = corrupt_tokens(ctx.batch.tokens, where, int(ctx.model.cfg.d_vocab), self.corruption.seed)
        sites = resolve_components(ctx.model, self.patch, ctx.path + ("patch",))
        variants = {
            "corrupted": Variant(input=key),
            "patched": Variant(input=key, edits=tuple(HookEdit(s, at, "clean") for s in sites)),
        }

        def score(out: ClaimOutputs) -> Measurement:
            per_seq = {"n": mask.sum(1).double(), "clean": sequence_sums(out, None, metric, mask)}
            per_seq |= {role: sequence_sums(out, role, metric, mask) for role in variants}
            stats = SequenceStats(per_seq, fraction_recovered)
            t = {k: float(v) / float(per_seq["n"].sum()) for k, v in stats.totals().items()}
            estimate = stats.estimate()
            found = (
                f"corrupting '{self.corruption.positions}' moved {self.metric} from {t['clean']:.4f} to "
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
            f"corruption: {self.corruption.scheme} at '{self.corruption.positions}' (seed {self.corruption.seed})",
            f"score {self.metric} at '{self.positions}' ({int(mask.sum())} positions) against clean next tokens",
        )
        return ClaimPlan(
            claim_id=self.id, kind=self.kind, variants=variants, captures=frozenset(), describe=lines, score=score,
            reads=reads([None, *variants], [metric], mask),
        )
