"""Localization (circuitry's mechanism localization): ablating the circuit's edges, keeping the rest
of the model, destroys the task.

estimate = the drop sign * (M(model) - M(model without the circuit's edges)), absolute or relative to
|M(model)|; "worse" follows the metric's direction. With ``random_baseline``, the same number of
edges drawn at random from the full graph (seeded) are removed instead; the p-value of a random
set dropping at least as much is Holm-adjusted with the file's other p-values.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from circuitcheck.claims.ablation import RandomBaseline
from circuitcheck.claims.base import CompileContext, claim_kind
from circuitcheck.claims.circuit_common import CircuitClaim, all_edges, run_sums
from circuitcheck.errors import PlanError
from circuitcheck.plan.interventions import ClaimOutputs, ClaimPlan, EdgeRun, Measurement, RandomCircuits, reads
from circuitcheck.spec.warnings import random_pool_warning
from circuitcheck.stats import SequenceStats, Totals, safe_ratio

if TYPE_CHECKING:
    import torch


@claim_kind
class LocalizationClaim(CircuitClaim):
    """Removing the circuit's edges hurts ``metric``: estimate = the drop (absolute or relative)."""

    # The kind's reference (`circuitcheck docs KIND`): exact estimate, interval, a worked example, traps.
    formula = """\
M_run = (sum of the metric over the scored positions of run) / (number of scored positions)
  model: the clean run; without: every edge of the circuit ablated (`ablation`), every other edge kept
  s = +1 when the metric is higher-is-better, -1 when lower-is-better (loss, kl)
drop = s * (M_model - M_without)
effect: absolute_drop   estimate = drop
effect: relative_drop   estimate = drop / |M_model|
"""
    example = """\
- id: head-path-localized
  statement: Removing the head path's edges destroys the completion at Y.
  kind: localization
  circuit: head-path
  ablation: mean
  positions: Y
  metric: correct_prob
  effect: relative_drop
  threshold: {at_least: 0.5}
"""
    resamples = (
        "Sequences: a percentile bootstrap (statistics.bootstrap resamples, seeded) draws sequences with replacement "
        "and recomputes the estimate from the drawn sequences' totals, every numerator and denominator from the same "
        "draw. With random_baseline: as many edges drawn at random (seeded) removed instead; p = (1 + #{random drop "
        ">= observed}) / (1 + n), Holm-adjusted with the file's other p-values."
    )
    traps = (
        "relative_drop divides by |M_model|: near-zero metrics (logit_diff, logprob) make it explode.",
        "A large drop says the circuit's edges matter, not that they are all that matters: pair it with preservation.",
    )

    kind: Literal["localization"] = "localization"
    effect: Literal["absolute_drop", "relative_drop"] = Field(
        default="absolute_drop", description="absolute_drop, or relative_drop (the drop over |M(model)|)"
    )
    random_baseline: RandomBaseline | None = None

    def compile(self, ctx: CompileContext) -> ClaimPlan:
        import torch

        circuit = ctx.circuit(self.circuit)
        metric, mask, sign = self.scoring(ctx)
        everything = all_edges(ctx)
        kept = set(circuit.edges)
        runs: dict[str, EdgeRun] = {"ablated": self.edge_run(e for e in everything if e not in kept)}
        randoms: dict[str, EdgeRun] = {}
        if self.random_baseline is not None:
            size = len(circuit.edges)
            if size >= len(everything):
                raise PlanError(ctx.path + ("random_baseline",),
                                f"random sets of {size} of the model's {len(everything)} edges are not random",
                                "drop random_baseline")
            gen = torch.Generator().manual_seed(self.random_baseline.seed)
            own, circuit_at = 0, {j for j, e in enumerate(everything) if e in kept}
            for i in range(self.random_baseline.n):
                pick = set(torch.randperm(len(everything), generator=gen)[:size].tolist())
                own += pick == circuit_at  # the circuit itself: it ties, so it always counts against the claim
                randoms[f"random{i}"] = self.edge_run(e for j, e in enumerate(everything) if j not in pick)
            ctx.warn(random_pool_warning(
                self.id, ctx.path + ("random_baseline",), n=self.random_baseline.n, alpha=self.random_baseline.alpha,
                pool=[str(e) for e in everything], size=size, own_draws=own, what="edge",
            ))
        runs |= randoms

        def statistic(t: Totals) -> torch.Tensor:
            model = t["model"] / t["n"]
            drop = sign * (model - t["ablated"] / t["n"])
            return drop if self.effect == "absolute_drop" else safe_ratio(drop, model.abs())

        def score(out: ClaimOutputs) -> Measurement:
            per_seq = {"n": mask.sum(1).double(), "model": run_sums(metric, out, mask),
                       "ablated": run_sums(metric, out, mask, "ablated")}
            stats = SequenceStats(per_seq, statistic)
            t = {k: float(v) for k, v in stats.totals().items()}
            model, ablated = t["model"] / t["n"], t["ablated"] / t["n"]
            estimate = stats.estimate()
            details = {"metric_model": model, "metric_ablated": ablated, "n_examples": int(t["n"]),
                       "n_edges": len(circuit.edges), "ablation": self.ablation}
            random = None
            if randoms:
                totals = stats.totals()
                values = torch.stack([
                    statistic(totals | {"ablated": run_sums(metric, out, mask, r).sum()}) for r in randoms
                ])
                as_much = int((values >= estimate).sum()) if estimate == estimate else len(values)
                random = RandomCircuits(len(values), float(values.nanmean()), (1 + as_much) / (1 + len(values)))
                details |= random.shown()
            found = (
                f"{self.ablation}-ablating the {len(circuit.edges)} edge(s) of circuit {self.circuit!r} moved "
                f"{self.metric} from {model:.4f} to {ablated:.4f} ({self.effect.replace('_', ' ')} {estimate:.4f})"
            )
            return Measurement(estimate, found, details, stats, n_examples=int(t["n"]), random=random)

        lines = self.plan_lines(ctx, runs, mask)
        if self.random_baseline is not None:
            rb = self.random_baseline
            lines += (f"baseline: {rb.n} random sets of {len(circuit.edges)} edge(s) removed, seed {rb.seed}",)
        return ClaimPlan(claim_id=self.id, kind=self.kind, variants={}, captures=frozenset(),
                         describe=lines, score=score, edge_runs=runs,
                         reads=reads([None, *runs], [metric], mask))
