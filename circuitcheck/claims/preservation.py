"""Preservation (circuitry's mechanism preservation): the circuit alone performs like the model.

estimate = M(circuit) - M(model) (``estimate: difference``), or M(circuit) / M(model) - 1
(``estimate: ratio``, a relative difference, so that one equivalence bound fits both). Judge it
with ``threshold: {within: margin}``: pass only when the whole interval lies inside ±margin.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from circuitcheck.claims.base import CompileContext, claim_kind
from circuitcheck.claims.circuit_common import CircuitClaim, run_sums
from circuitcheck.plan.interventions import ClaimOutputs, ClaimPlan, Measurement, reads
from circuitcheck.stats import SequenceStats, Totals, safe_ratio

if TYPE_CHECKING:
    import torch


@claim_kind
class PreservationClaim(CircuitClaim):
    """The circuit alone keeps the model's ``metric``: estimate = M(circuit) - M(model), or the ratio - 1."""

    # The kind's reference (`circuitcheck docs KIND`): exact estimate, interval, a worked example, traps.
    formula = """\
M_run = (sum of the metric over the scored positions of run) / (number of scored positions)
  model: the model's own clean run; circuit: only the circuit's edges kept, every other edge carrying its
  `ablation` value (zero, per-position mean, or another sequence's value); norms recomputed
estimate: difference   estimate = M_circuit - M_model
estimate: ratio        estimate = M_circuit / M_model - 1   (a relative difference)
Judge it with threshold {within: m}: pass when the whole interval lies in [-m, m], fail when wholly outside.
"""
    example = """\
- id: head-path-preserved
  statement: The head path alone performs like the model at Y.
  kind: preservation
  circuit: head-path
  ablation: mean
  positions: Y
  metric: correct_prob
  threshold: {within: 0.05}
"""
    resamples = (
        "Sequences: a percentile bootstrap (statistics.bootstrap resamples, seeded) draws sequences with replacement "
        "and recomputes the estimate from the drawn sequences' totals, every numerator and denominator from the same "
        "draw."
    )
    traps = (
        "An at_least or at_most threshold on a difference asks a one-sided question; equivalence needs within: m.",
        "ratio divides by M_model: undefined when it is 0, and large for metrics near 0.",
        "A circuit that removes no edge is the model itself and is refused as vacuous.",
    )

    kind: Literal["preservation"] = "preservation"
    estimate: Literal["difference", "ratio"] = Field(
        default="difference", description="difference: M(circuit) - M(model); ratio: M(circuit) / M(model) - 1"
    )

    def compile(self, ctx: CompileContext) -> ClaimPlan:
        circuit = ctx.circuit(self.circuit)
        metric, mask, _ = self.scoring(ctx)
        runs = {"circuit": self.edge_run(circuit.edges)}

        def statistic(t: Totals) -> torch.Tensor:
            model, kept = t["model"] / t["n"], t["circuit"] / t["n"]
            return kept - model if self.estimate == "difference" else safe_ratio(kept, model) - 1.0

        def score(out: ClaimOutputs) -> Measurement:
            per_seq = {"n": mask.sum(1).double(), "model": run_sums(metric, out, mask),
                       "circuit": run_sums(metric, out, mask, "circuit")}
            stats = SequenceStats(per_seq, statistic)
            t = {k: float(v) for k, v in stats.totals().items()}
            model, kept = t["model"] / t["n"], t["circuit"] / t["n"]
            estimate = stats.estimate()
            found = (
                f"circuit {self.circuit!r} ({len(circuit.edges)} of {circuit.n_model_edges} edges, the rest "
                f"{self.ablation}-ablated) gave {self.metric} {kept:.4f} against the model's {model:.4f} "
                f"({self.estimate} {estimate:.4f})"
            )
            details = {"metric_circuit": kept, "metric_model": model, "n_examples": int(t["n"]),
                       "n_edges": len(circuit.edges), "ablation": self.ablation}
            return Measurement(estimate, found, details, stats, n_examples=int(t["n"]))

        return ClaimPlan(claim_id=self.id, kind=self.kind, variants={}, captures=frozenset(),
                         describe=self.plan_lines(ctx, runs, mask), score=score, edge_runs=runs,
                         reads=reads([None, *runs], [metric], mask))
