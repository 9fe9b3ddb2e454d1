"""What the edge-level circuit claims share (preservation, localization, minimality, faithfulness).

Each names a circuit of the file's ``circuits:`` block, how removed edges are ablated, and where
which metric is scored. Their runs are :class:`EdgeRun` s: the engine runs them with the batched
edge engine (:mod:`circuitcheck.run.edges`) and self-checks that the full circuit reproduces the model.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from circuitcheck.claims.base import ClaimSpec, CompileContext, sequence_sums
from circuitcheck.plan.circuits import ModelShape
from circuitcheck.plan.interventions import ClaimOutputs, EdgeRun
from circuitcheck.spec.base import Seed
from circuitcheck.spec.circuits import Edge
from circuitcheck.spec.references import CircuitRef, MetricName, Selection

if TYPE_CHECKING:  # torch is imported where a model is needed: `validate` loads this module without it
    import torch

    from circuitcheck.metrics import Metric


class CircuitClaim(ClaimSpec):
    """Keys of every edge-level circuit claim (not a kind itself)."""

    circuit: CircuitRef = Field(description="A circuit named under the file's 'circuits:'")
    ablation: Literal["zero", "mean", "resample"] = Field(
        description="What a removed edge carries: zero, the per-position mean, or another sequence's value"
    )
    ablation_seed: Seed = Field(default=0, description="resample only: the seed of the sequence derangement")
    positions: Selection = Field(description="Positions where the metric is measured")
    metric: MetricName

    def edge_run(self, edges: Iterable[Edge]) -> EdgeRun:
        """The run keeping exactly ``edges``, the others ablated as the claim says."""
        seed = self.ablation_seed if self.ablation == "resample" else None
        return EdgeRun(frozenset(edges), self.ablation, seed)

    def scoring(self, ctx: CompileContext) -> tuple[Metric, torch.Tensor, float]:
        """(the metric, the scored positions' mask, +1 when higher is better else -1)."""
        metric = ctx.metric(self.metric)
        return metric, ctx.scored(self.positions), 1.0 if metric.higher_is_better else -1.0

    def plan_lines(self, ctx: CompileContext, runs: dict[str, EdgeRun], mask: torch.Tensor) -> tuple[str, ...]:
        circuit = ctx.circuit(self.circuit)
        return (
            f"circuit {self.circuit!r}: {len(circuit.edges)} of the model's {circuit.n_model_edges} edges",
            f"{len(runs)} edge-level run(s), removed edges {self.ablation}-ablated",
            f"score {self.metric} at '{self.positions}' ({int(mask.sum())} positions)",
        )


def all_edges(ctx: CompileContext) -> list[Edge]:
    """Every edge of the model, in forward order."""
    return ModelShape.of(ctx.model).all_edges()


def run_sums(metric: Metric, out: ClaimOutputs, mask: torch.Tensor, role: str | None = None) -> torch.Tensor:
    """Per-sequence metric totals of the run ``role`` (the model's own clean run when None)."""
    return sequence_sums(out, role, metric, mask)
