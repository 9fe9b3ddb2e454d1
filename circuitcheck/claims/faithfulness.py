"""Faithfulness: the share of the model's effect the circuit keeps, over edges.

estimate = (M(circuit) - M(empty)) / (M(model) - M(empty)), where the empty circuit keeps no
edge (every edge ablated): the edge-level twin of ablation's node sufficiency.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from circuitcheck.claims.base import CompileContext, claim_kind
from circuitcheck.claims.circuit_common import CircuitClaim, run_sums
from circuitcheck.plan.interventions import ClaimOutputs, ClaimPlan, Measurement, reads
from circuitcheck.stats import SequenceStats, Totals, safe_ratio

if TYPE_CHECKING:
    import torch


@claim_kind
class FaithfulnessClaim(CircuitClaim):
    """The circuit keeps the model's effect on ``metric``: estimate = (circuit - empty) / (model - empty)."""

    # The kind's reference (`circuitcheck docs KIND`): exact estimate, interval, a worked example, traps.
    formula = """\
M_run = (sum of the metric over the scored positions of run) / (number of scored positions)
  model: the model's own clean run; circuit: only the circuit's edges kept, every other edge carrying its
  `ablation` value (zero, per-position mean, or another sequence's value); norms recomputed
  empty: no edge kept (every edge ablated)
estimate = (M_circuit - M_empty) / (M_model - M_empty)   (1: the circuit keeps all of the model's effect)
"""
    example = """\
- id: head-path-faithful
  statement: The head path keeps the model's probability on Z at Y over the empty circuit.
  kind: faithfulness
  circuit: head-path
  ablation: mean
  positions: Y
  metric: correct_prob
  threshold: {at_least: 0.8}
"""
    resamples = (
        "Sequences: a percentile bootstrap (statistics.bootstrap resamples, seeded) draws sequences with replacement "
        "and recomputes the estimate from the drawn sequences' totals, every numerator and denominator from the same "
        "draw."
    )
    traps = (
        "Undefined (null, fails) when removing every edge leaves the metric unchanged (M_model = M_empty).",
        "Not clipped: a circuit can beat the model (above 1).",
        "A circuit that removes no edge cannot fail and is refused as vacuous.",
    )

    kind: Literal["faithfulness"] = "faithfulness"

    def compile(self, ctx: CompileContext) -> ClaimPlan:
        circuit = ctx.circuit(self.circuit)
        metric, mask, _ = self.scoring(ctx)
        runs = {"circuit": self.edge_run(circuit.edges), "empty": self.edge_run(())}

        def statistic(t: Totals) -> torch.Tensor:
            model, kept, empty = t["model"] / t["n"], t["circuit"] / t["n"], t["empty"] / t["n"]
            return safe_ratio(kept - empty, model - empty)

        def score(out: ClaimOutputs) -> Measurement:
            per_seq = {"n": mask.sum(1).double(), "model": run_sums(metric, out, mask)}
            per_seq |= {role: run_sums(metric, out, mask, role) for role in runs}
            stats = SequenceStats(per_seq, statistic)
            t = {k: float(v) for k, v in stats.totals().items()}
            means = {f"metric_{k}": t[k] / t["n"] for k in ("model", "circuit", "empty")}
            estimate = stats.estimate()
            found = (
                f"circuit {self.circuit!r} ({len(circuit.edges)} of {circuit.n_model_edges} edges) gave {self.metric} "
                f"{means['metric_circuit']:.4f} (model {means['metric_model']:.4f}, no edges "
                f"{means['metric_empty']:.4f}): retains {estimate:.3f} of the effect"
            )
            if estimate != estimate:
                found += "; undefined because removing every edge does not change the metric"
            details = means | {"n_examples": int(t["n"]), "n_edges": len(circuit.edges), "ablation": self.ablation}
            return Measurement(estimate, found, details, stats, n_examples=int(t["n"]))

        return ClaimPlan(claim_id=self.id, kind=self.kind, variants={}, captures=frozenset(),
                         describe=self.plan_lines(ctx, runs, mask), score=score, edge_runs=runs,
                         reads=reads([None, *runs], [metric], mask))
