"""Replacement claims: swap components for simplified versions and measure what survives (T5, T6).

Each replacement names a component and what replaces it: an ablation value (zero, mean,
resample) or, for a head, an attention rule (previous, self, uniform) applied to its
pattern. With no final LayerNorm, zeroing the MLP is the direct readout of resid_mid (DLA).
estimate = the task metric with the replacements in place; details add the full model's
value, top-1 agreement and KL with the full model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from circuitcheck.claims.base import ClaimSpec, CompileContext, claim_kind
from circuitcheck.errors import PlanError
from circuitcheck.metrics import metrics
from circuitcheck.plan.components import HookSite, resolve_component
from circuitcheck.plan.interventions import (
    PATTERN_RULES,
    ClaimOutputs,
    ClaimPlan,
    HookEdit,
    Measurement,
    Variant,
    reads,
)
from circuitcheck.plan.positions import ALL
from circuitcheck.spec.base import Seed, Strict
from circuitcheck.spec.components import ComponentRef
from circuitcheck.spec.references import MetricName, Selection
from circuitcheck.stats import SequenceStats, Totals, per_sequence

if TYPE_CHECKING:  # torch is imported where a model is needed: `validate` loads this module without it
    import torch


class Replacement(Strict):
    component: ComponentRef = Field(description="L.H, mlpL, embed, pos_embed or a hook name")
    with_: Literal["zero", "mean", "resample", "previous", "self", "uniform", "linear"] = Field(alias="with")
    at: Selection = Field(default=ALL, description="Positions where the replacement applies")
    seed: Seed | None = Field(default=None, description="For resample")
    fit: Selection | None = Field(default=None, description="For linear: positions the Jacobian is fitted on")
    jacobian: Literal["median", "mean", "at_mean_input"] = Field(
        default="median",
        description=(
            "For linear: the elementwise median (seed 002) or mean of the per-example Jacobians, or the Jacobian at "
            "the mean input"
        ),
    )


def _mean(t: Totals) -> torch.Tensor:
    return t["replaced"] / t["n"]


@claim_kind
class ReplacementClaim(ClaimSpec):
    """With components replaced by simpler versions the model still does the task: ``metric`` under replacement."""

    # The kind's reference (`circuitcheck docs KIND`): exact estimate, interval, a worked example, traps.
    formula = """\
replaced: the run with every `replace` entry in place (an ablation value; an attention rule previous / self /
  uniform on a head's pattern; linear: an MLP replaced by its Jacobian and bias fitted on `fit`)
estimate = (sum over scored positions of the metric in the replaced run) / (number of scored positions)
  (replace: [] scores the full model itself)
details: the full model's value, top-1 agreement and KL with the full model
"""
    example = """\
- id: T5
  statement: With the head attending only to the previous token at Y, the model still completes most trigrams.
  kind: replacement
  replace: [{component: "0.0", with: previous, at: Y}]
  positions: Y
  metric: accuracy
  threshold: {at_least: 0.7}
"""
    resamples = (
        "Sequences: a percentile bootstrap (statistics.bootstrap resamples, seeded) draws sequences with replacement "
        "and recomputes the estimate from the drawn sequences' totals, every numerator and denominator from the same "
        "draw."
    )
    traps = (
        "The estimate is the replaced model's metric, not its difference from the full model: compare with the "
        "metric_full detail, or use an ordering of rungs.",
        "With no final LayerNorm, zeroing the MLP is the direct readout of resid_mid (DLA).",
        "linear needs fit positions; jacobian: median is seed 002's choice, mean and at_mean_input differ.",
    )

    kind: Literal["replacement"] = "replacement"
    replace: list[Replacement] = Field(description="Empty: the full model itself (a ladder's top rung)")
    positions: Selection
    metric: MetricName

    def _edits(self, ctx: CompileContext) -> tuple[HookEdit, ...]:
        edits = []
        for i, r in enumerate(self.replace):
            path = ctx.path + ("replace", i)
            at = ctx.selection(r.at, "replace")
            sites = resolve_component(ctx.model, r.component, path + ("component",))
            if (r.with_ == "resample") != (r.seed is not None):
                raise PlanError(path + ("seed",), "resample needs a seed, and only resample takes one")
            if (r.with_ == "linear") != (r.fit is not None):
                raise PlanError(path + ("fit",), "a linear replacement needs 'fit' positions, and only it takes them")
            if r.with_ != "linear" and "jacobian" in r.model_fields_set:
                raise PlanError(path + ("jacobian",), "'jacobian' applies to linear replacements only", "remove it")
            if r.with_ == "linear":
                if not all(s.hook.endswith("hook_mlp_out") for s in sites):
                    raise PlanError(path + ("with",), f"'linear' linearises an MLP, not {str(r.component)!r}")
                fit = ctx.selection(r.fit or "", "replace")
                layer = sites[0].hook.split(".")[1]
                edits += [
                    HookEdit(s, at, "linear", reads=f"blocks.{layer}.hook_resid_mid", fit=fit, jacobian=r.jacobian)
                    for s in sites
                ]
                continue
            if r.with_ in PATTERN_RULES:
                if any(s.head is None for s in sites):
                    raise PlanError(
                        path + ("with",), f"attention rule {r.with_!r} applies to heads only, not {str(r.component)!r}"
                    )
                sites = [HookSite(s.hook.replace("hook_z", "hook_pattern"), s.head) for s in sites]
            edits += [HookEdit(s, at, r.with_, r.seed) for s in sites]
        return tuple(edits)

    def compile(self, ctx: CompileContext) -> ClaimPlan:
        metric = ctx.metric(self.metric)
        mask = ctx.scored(self.positions)
        variant = Variant(edits=self._edits(ctx))
        agree, kl = metrics.get("top1_agreement"), metrics.get("kl")

        def score(out: ClaimOutputs) -> Measurement:
            run = "replaced" if variant.edits else None
            scores = out.scores(run, metric, mask)
            full = out.scores(None, metric, mask)
            stats = SequenceStats({"n": mask.sum(1).double(), "replaced": per_sequence(scores, mask)}, _mean)
            estimate = stats.estimate()
            agreement = float(out.scores(run, agree, mask).mean())
            divergence = float(out.scores(run, kl, mask).mean())
            what = "; ".join(f"{r.component} -> {r.with_} at '{r.at}'" for r in self.replace) or "nothing replaced"
            found = (
                f"with {what}, {self.metric} is {estimate:.4f} (full model {float(full.mean()):.4f}); "
                f"top-1 agreement with the full model {agreement:.3f}, KL {divergence:.4f}"
            )
            details = {"metric_full": float(full.mean()), "top1_agreement": agreement, "kl_to_full": divergence,
                       "n_examples": int(mask.sum()), "n_sequences": int(mask.any(1).sum())}
            return Measurement(estimate, found, details, stats, scores.double(), n_examples=int(mask.sum()))

        variants = {"replaced": variant} if variant.edits else {}
        lines = (
            f"replaced: {variant.describe()}",
            f"score {self.metric} at '{self.positions}' ({int(mask.sum())} positions)",
        )
        return ClaimPlan(
            claim_id=self.id, kind=self.kind, variants=variants, captures=frozenset(), describe=lines, score=score,
            reads=reads([None, *variants], [metric, agree, kl], mask),
        )
