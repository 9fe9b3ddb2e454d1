"""The share of direct logit attribution to the correct label carried by named components.

CLAIMS.md C2 ("heads 1.0 and 1.1 do the heavy lifting") and F2 (the direct path
W_U W_E against the single-head paths). The clean logits are split exactly into
per-component terms (:mod:`circuitcheck.claims.dla_common`); estimate = the named
components' summed contribution to the correct label's logit over the summed
contribution of all components, at the selected positions. ``centering:
batch_mean`` (the seed's choice) first subtracts each component's mean output over the
sequences, position by position, so a component that writes the same thing everywhere gets no
credit (``pos_embed`` gets exactly 0).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from circuitcheck.claims.base import ClaimSpec, CompileContext, claim_kind
from circuitcheck.claims.dla_common import BIAS, at_label, decompose, dla_captures
from circuitcheck.errors import PlanError
from circuitcheck.plan.components import model_components, resolve_component
from circuitcheck.plan.interventions import ClaimOutputs, ClaimPlan, Measurement
from circuitcheck.spec.components import ComponentRef
from circuitcheck.spec.references import Selection
from circuitcheck.stats import SequenceStats, per_sequence, safe_ratio


@claim_kind
class DLAShareClaim(ClaimSpec):
    """Named components carry the direct logit attribution to the correct label: their share of it."""

    # The kind's reference (`circuitcheck docs KIND`): exact estimate, interval, a worked example, traps.
    formula = """\
The clean logits split exactly into per-component terms (checked against the logits):
  T_c = ((o_c - mean over d_model of o_c) / scale) * w_ln @ W_U    (final LayerNorm scale from the clean run;
  T_c = o_c @ W_U without a final norm), o_c = component c's write into the residual stream
centering: batch_mean  o_c is first replaced by o_c - (its mean over the sequences at the same position);
  the constant (bias) terms then drop out
named = sum over scored positions of sum over c in `components` of T_c[correct next token]
total = sum over scored positions of sum over every component c (and the bias, uncentred) of T_c[correct]
estimate = named / total
"""
    example = """\
- id: head-dla
  statement: The attention head carries most of the direct logit attribution to the correct token at Y.
  kind: dla_share
  components: ["0.0"]
  positions: Y
  centering: batch_mean
  threshold: {at_least: 0.5}
"""
    resamples = (
        "Sequences: a percentile bootstrap (statistics.bootstrap resamples, seeded) draws sequences with replacement "
        "and recomputes the estimate from the drawn sequences' totals, every numerator and denominator from the same "
        "draw. named and total are summed over the drawn sequences, then divided."
    )
    traps = (
        "A share is not bounded by [0, 1]: components that push against the label make the total small and other "
        "shares large or negative.",
        "With centering: batch_mean, pos_embed gets exactly 0 (it is the same in every sequence); with none it and "
        "the biases get credit for constant writes.",
        "List single components (embed, pos_embed, L.H, mlpL), not attnL or hook names.",
    )

    kind: Literal["dla_share"] = "dla_share"
    components: list[ComponentRef] = Field(
        min_length=1, description="Components whose share is claimed: embed, pos_embed, L.H, mlpL"
    )
    positions: Selection
    centering: Literal["batch_mean", "none"] = Field(
        description="batch_mean: subtract each component's mean output over the sequences, position by position, "
        "first (seed 001; pos_embed then gets exactly 0)"
    )

    def compile(self, ctx: CompileContext) -> ClaimPlan:
        model = ctx.model
        known = model_components(model)
        for i, component in enumerate(self.components):
            resolve_component(model, component, ctx.path + ("components", i))  # range and kind errors, with fixes
            if component not in known:
                raise PlanError(
                    ctx.path + ("components", i),
                    f"{str(component)!r} is not a single component",
                    f"list components one by one: {', '.join(map(str, known))}",
                )
        mask = ctx.scored(self.positions)
        center = self.centering == "batch_mean"
        named = list(dict.fromkeys(map(str, self.components)))

        def score(out: ClaimOutputs) -> Measurement:
            terms = at_label(decompose(model, out.captured, out.clean_logits, center), out.batch.next_token, mask)
            total = sum(v for k, v in terms.items())
            per_seq = {
                "named": per_sequence(sum(terms[n] for n in named), mask),  # type: ignore[arg-type]
                "total": per_sequence(total, mask),  # type: ignore[arg-type]
            }
            stats = SequenceStats(per_seq, lambda t: safe_ratio(t["named"], t["total"]))
            means = {k: float(v.mean()) for k, v in terms.items() if not (center and k == BIAS)}
            all_sum = float(total.sum())  # type: ignore[union-attr]
            shares = {f"share_{k}": float(v.sum()) / all_sum for k, v in terms.items() if k in means}
            estimate = stats.estimate()
            found = (
                f"{' + '.join(named)} carry {estimate:.1%} of the direct logit attribution to the correct label "
                f"over {int(mask.sum())} positions (mean contribution per component: "
                + ", ".join(f"{k} {v:+.2f}" for k, v in means.items())
                + ")"
            )
            return Measurement(estimate, found, {"mean_dla": means} | shares | {"n_positions": int(mask.sum())}, stats)

        lines = (
            f"clean run; decompose the logits into {len(known)} components + biases through the final norm (scale from "
            "the clean run)",
            f"share of [{', '.join(named)}] in the correct label's logit at '{self.positions}' ({int(mask.sum())} "
            f"positions), centering {self.centering}",
        )
        return ClaimPlan(
            claim_id=self.id, kind=self.kind, variants={}, captures=frozenset(dla_captures(model)),
            describe=lines, score=score, needs_clean_logits=True,
        )
