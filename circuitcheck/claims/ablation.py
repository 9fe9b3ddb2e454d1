"""Ablation claims: a component is necessary, or a circuit is sufficient (CLAIMS.md T8).

necessity:   estimate = drop of the metric when ``components`` are ablated
             (absolute, or relative to the clean value); "worse" follows the
             metric's direction, so a rise in loss counts as a drop.
sufficiency: ablate everything except ``components``; estimate =
             (M_circuit - M_empty) / (M_full - M_empty), where "empty" ablates all.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field, model_validator

from circuitcheck.claims.ablation_common import AblationMethod, ablation_edits
from circuitcheck.claims.base import ClaimSpec, CompileContext, claim_kind, sequence_sums
from circuitcheck.errors import PlanError
from circuitcheck.plan.components import complement, model_components, resolve_components
from circuitcheck.plan.interventions import ClaimOutputs, ClaimPlan, Measurement, RandomCircuits, Variant, reads
from circuitcheck.plan.positions import ALL
from circuitcheck.spec.base import Seed, Strict, rule_error
from circuitcheck.spec.components import ComponentRef
from circuitcheck.spec.references import MetricName, Selection
from circuitcheck.spec.warnings import random_pool_warning
from circuitcheck.stats import Fraction, SequenceStats, Totals, safe_ratio

if TYPE_CHECKING:  # torch is imported where a model is needed: `validate` loads this module without it
    import torch


class RandomBaseline(Strict):
    """Compare with ``n`` random circuits of the same size (components drawn without replacement)."""

    n: int = Field(ge=10, le=10_000)
    seed: Seed
    alpha: float | None = Field(
        default=None, gt=0.0, lt=1.0, description="If set, the claim also needs a Holm-adjusted p-value below alpha"
    )


RETAINED = Fraction(lambda s: (s["circuit"] - s["empty"], s["full"] - s["empty"], s["n"]))
"""Sufficiency as a fraction of the effect of ablating everything, over scored positions (for its interval)."""
LOST = Fraction(lambda s: (s["full"] - s["ablated"], s["full"] * s["full"].sum().sign(), s["n"]))
"""A relative drop of a higher-is-better metric as the fraction of |M_full| lost, over scored positions. Not for
a lower-is-better one: a loss can rise to many times its clean value, so the relative drop has no upper bound."""


@claim_kind
class AblationClaim(ClaimSpec):
    """Ablating ``components`` hurts ``metric`` (necessity), or keeping only them keeps it (sufficiency)."""

    # The kind's reference (`circuitcheck docs KIND`): exact estimate, interval, a worked example, traps.
    formula = """\
M_run = (sum of the metric over the scored positions of run) / (number of scored positions)
  full: the clean run; ablated: `components` ablated (`method`) at `ablate_at`;
  circuit: every component except `components` ablated; empty: every component ablated
  s = +1 when the metric is higher-is-better, -1 when lower-is-better (loss, kl)
mode: necessity
  drop = s * (M_full - M_ablated)                (positive: ablating hurts)
  effect: absolute_drop   estimate = drop
  effect: relative_drop   estimate = drop / |M_full|
mode: sufficiency
  estimate = (M_circuit - M_empty) / (M_full - M_empty)   (1: the circuit keeps all of the effect)
"""
    example = """\
- id: T8
  statement: Mean-ablating the attention head destroys trigram completion.
  kind: ablation
  mode: necessity
  components: ["0.0"]
  method: mean
  positions: Y
  metric: accuracy
  effect: relative_drop
  threshold: {at_least: 0.5}
"""
    resamples = (
        "Sequences: a percentile bootstrap (statistics.bootstrap resamples, seeded) draws sequences with replacement "
        "and recomputes the estimate from the drawn sequences' totals, every numerator and denominator from the same "
        "draw. Sufficiency, and the relative drop of a higher-is-better metric, are fractions of an effect, so "
        "their interval also holds Wilson's score interval for the fraction over the scored positions "
        "(design-effect adjusted for positions that cluster by sequence). "
        "With random_baseline: n random circuits of as many components give p = (1 + #{random estimate >= "
        "observed}) / (1 + n), Holm-adjusted with the file's other p-values."
    )
    traps = (
        "relative_drop divides by |M_full|: with a metric near zero (logit_diff, logprob) the estimate explodes; use "
        "absolute_drop there.",
        "Sufficiency is undefined (null, the claim fails) when ablating everything leaves the metric unchanged "
        "(M_full = M_empty).",
        "Mean- or resample-ablating pos_embed changes nothing: it is the same in every sequence. resample needs "
        "resample_seed and at least 2 sequences.",
        "A sufficiency claim over every component, or a necessity claim whose ablation reaches no scored position, "
        "cannot fail and is refused as vacuous (allow_vacuous: true with a reason keeps it).",
    )

    kind: Literal["ablation"] = "ablation"
    supports_floor: ClassVar[bool] = True
    mode: Literal["necessity", "sufficiency"]
    components: list[ComponentRef] = Field(description="embed, pos_embed, L.H, attnL, mlpL, or hook names")
    method: AblationMethod
    resample_seed: Seed | None = None
    ablate_at: Selection = Field(default=ALL, description="Positions where the ablation applies")
    positions: Selection = Field(description="Positions where the metric is measured")
    metric: MetricName
    effect: Literal["absolute_drop", "relative_drop"] | None = Field(
        default=None, description="necessity only: how the drop is expressed"
    )
    random_baseline: RandomBaseline | None = None

    @model_validator(mode="after")
    def _effect_matches_mode(self) -> AblationClaim:
        if self.mode == "necessity" and self.effect is None:
            raise rule_error("a necessity claim needs an 'effect'", "add 'effect: relative_drop' (or absolute_drop)")
        if self.mode == "sufficiency" and self.effect is not None:
            raise rule_error("'effect' applies to necessity claims only; sufficiency reports the retained fraction",
                             "remove 'effect:'")
        if self.mode == "necessity" and not self.components:
            raise rule_error("a necessity claim needs at least one component",
                             "list the components whose ablation should hurt")
        return self

    def _statistic(self, sign: float) -> Callable[[Totals], torch.Tensor]:
        def statistic(t: Totals) -> torch.Tensor:
            full = t["full"] / t["n"]
            if self.mode == "sufficiency":
                circuit, empty = t["circuit"] / t["n"], t["empty"] / t["n"]
                return safe_ratio(circuit - empty, full - empty)
            drop = sign * (full - t["ablated"] / t["n"])
            return drop if self.effect == "absolute_drop" else safe_ratio(drop, full.abs())

        return statistic

    def _fraction(self, sign: float) -> Fraction | None:
        """What makes the estimate a bounded fraction, for its interval (:class:`circuitcheck.stats.Fraction`)."""
        if self.mode == "sufficiency":
            return RETAINED
        return LOST if self.effect == "relative_drop" and sign > 0 else None

    def _random_variants(self, ctx: CompileContext, sites: list, edits: Callable[[list], tuple]) -> dict[str, Variant]:
        if self.random_baseline is None:
            return {}
        import torch

        size = len(sites)
        everything = resolve_components(ctx.model, model_components(ctx.model), ())
        if size == 0 or size >= len(everything):
            raise PlanError(
                ctx.path + ("random_baseline",),
                f"random circuits of size {size} out of {len(everything)} components are not random",
                "drop random_baseline",
            )
        gen = torch.Generator().manual_seed(self.random_baseline.seed)
        out = {}
        own = 0  # draws that are the claimed circuit: they tie with it, so they always count against it
        for i in range(self.random_baseline.n):
            pick = [everything[j] for j in torch.randperm(len(everything), generator=gen)[:size].tolist()]
            own += set(pick) == set(sites)
            ablate = pick if self.mode == "necessity" else complement(ctx.model, pick)
            out[f"random{i}"] = Variant(edits=edits(ablate))
        names = [str(c) for c in model_components(ctx.model)]
        ctx.warn(random_pool_warning(
            self.id, ctx.path + ("random_baseline",), n=self.random_baseline.n, alpha=self.random_baseline.alpha,
            pool=names if len(names) == len(everything) else [str(s) for s in everything], size=size, own_draws=own,
        ))
        return out

    def _random_circuits(
        self, stats: SequenceStats, random_sums: dict[str, torch.Tensor], observed: float
    ) -> RandomCircuits:
        import torch

        role = "ablated" if self.mode == "necessity" else "circuit"
        totals = stats.totals()
        values = torch.stack([stats.statistic(totals | {role: s.sum()}) for s in random_sums.values()])
        at_least_as_good = int((values >= observed).sum()) if observed == observed else len(values)
        return RandomCircuits(len(values), float(values.nanmean()), (1 + at_least_as_good) / (1 + len(values)))

    def _per_example(
        self, out: ClaimOutputs, metric: Any, mask: torch.Tensor, means: dict, sign: float
    ) -> torch.Tensor:
        """Each example's contribution on the estimate's scale (aggregate terms use the means)."""
        def scores(role: str | None) -> torch.Tensor:
            return out.scores(role, metric, mask).double()

        full = scores(None)
        if self.mode == "necessity":
            drop = sign * (full - scores("ablated"))
            return drop if self.effect == "absolute_drop" else drop / abs(means["metric_full"])
        empty = means["metric_empty"]
        return (scores("circuit") - empty) / (means["metric_full"] - empty)

    def compile(self, ctx: CompileContext) -> ClaimPlan:
        metric = ctx.metric(self.metric)
        mask = ctx.scored(self.positions)
        at = ctx.selection(self.ablate_at, "ablate_at")
        sites = resolve_components(ctx.model, self.components, ctx.path + ("components",))

        def edits(targets: list) -> tuple:
            return ablation_edits(ctx, targets, self.method, at, self.resample_seed)

        sign = 1.0 if metric.higher_is_better else -1.0
        if self.mode == "necessity":
            variants = {"ablated": Variant(edits=edits(sites))}
        else:
            everything = resolve_components(ctx.model, model_components(ctx.model), ())
            variants = {
                "circuit": Variant(edits=edits(complement(ctx.model, sites))),
                "empty": Variant(edits=edits(everything)),
            }

        randoms = self._random_variants(ctx, sites, edits)
        pool = len(resolve_components(ctx.model, model_components(ctx.model), ())) if randoms else 0
        variants |= randoms

        def score(out: ClaimOutputs) -> Measurement:
            def sums(role: str | None) -> torch.Tensor:
                return sequence_sums(out, role, metric, mask)

            per_seq = {"n": mask.sum(1).double(), "full": sums(None)}
            for role in variants:
                if role not in randoms:
                    per_seq[role] = sums(role)
            stats = SequenceStats(per_seq, self._statistic(sign), self._fraction(sign))
            t = {k: float(v) for k, v in stats.totals().items()}
            means = {f"metric_{k}": t[k] / t["n"] for k in per_seq if k != "n"}
            estimate = stats.estimate()
            n_examples = int(t["n"])
            details = means | {
                "n_examples": n_examples,
                "n_sequences": int((per_seq["n"] > 0).sum()),
                "method": self.method,
            }
            full = means["metric_full"]
            random = None
            if randoms:
                random = self._random_circuits(stats, {r: sums(r) for r in randoms}, estimate)
                details |= random.shown() | {"random_pool": pool, "random_distinct": math.comb(pool, len(sites))}
            if self.mode == "necessity":
                details["drop"] = sign * (full - means["metric_ablated"])
                found = (
                    f"{self.method}-ablating {', '.join(map(str, self.components))} moved {self.metric} "
                    f"from {full:.4f} to {means['metric_ablated']:.4f} ({(self.effect or '').replace('_', ' ')} "
                    f"{estimate:.4f})"
                )
            else:
                found = (
                    f"keeping only {', '.join(map(str, self.components)) or 'nothing'} gave {self.metric} "
                    f"{means['metric_circuit']:.4f} "
                    f"(full {full:.4f}, all ablated {means['metric_empty']:.4f}): retains {estimate:.3f} of the effect"
                )
                if estimate != estimate:
                    found += "; undefined because ablating everything does not change the metric"
            per_example = self._per_example(out, metric, mask, means, sign)
            return Measurement(estimate, found, details, stats, per_example, n_examples=n_examples, random=random)

        lines = tuple(f"{role}: {v.describe()}" for role, v in variants.items() if role not in randoms) + (
            f"score {self.metric} at '{self.positions}' ({int(mask.sum())} positions)",
        )
        if self.random_baseline is not None:
            rb = self.random_baseline
            lines += (f"baseline: {rb.n} random circuits of {len(sites)} component site(s) from a pool of {pool}, "
                      f"seed {rb.seed} ({len(set(randoms.values()))} distinct)",)
        return ClaimPlan(
            claim_id=self.id, kind=self.kind, variants=variants, captures=frozenset(), describe=lines, score=score,
            reads=reads([None, *variants], [metric], mask),
        )
