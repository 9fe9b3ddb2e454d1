"""Minimality (circuitry's minimality): every edge of the circuit is needed.

For each circuit edge e: drop_e = sign * (M(circuit) - M(circuit without e)). Against it, random
non-circuit edges r (``random_edges`` drawn without replacement, seeded; all of them if fewer):
drop_r = sign * (M(circuit with r) - M(circuit)). An edge's p-value is the bootstrap (over sequences)
probability that drop_e is no larger than the largest drop_r (plus 1e-6 of float noise):
(1 + #{draws: drop_e* <= max_r drop_r + 1e-6}) / (1 + #draws), Holm-adjusted across the circuit's edges;
an edge is necessary when its adjusted p-value is below ``alpha``. estimate = the fraction of necessary
edges (exact: the uncertainty is in the per-edge p-values; each edge's drop also gets a 95% bootstrap
interval over sequences, 1000 resamples, seeded by ``seed``). Pass with ``threshold: {at_least: 1.0}``:
every edge necessary.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from circuitcheck.claims.base import CompileContext, claim_kind
from circuitcheck.claims.circuit_common import CircuitClaim, run_sums
from circuitcheck.errors import PlanError
from circuitcheck.plan.interventions import ClaimOutputs, ClaimPlan, EdgeRun, Measurement, reads
from circuitcheck.spec.base import Seed
from circuitcheck.stats import SequenceStats, Totals, holm

if TYPE_CHECKING:
    import torch

TIE_ATOL = 1e-6
"""Drops this close count as equal (float32 logits summed in another order)."""
EDGE_BOOTSTRAP = 1000


def _num(x: float) -> str:
    """Three decimals, without the ``-0.000`` of float noise."""
    return f"{x:.3f}" if abs(x) >= 5e-4 else "0.000"


@claim_kind
class MinimalityClaim(CircuitClaim):
    """Each circuit edge's removal hurts ``metric`` more than a random non-circuit edge's: estimate = the
    fraction of edges that are necessary (Holm-adjusted p-value below alpha)."""

    # The kind's reference (`circuitcheck docs KIND`): exact estimate, interval, a worked example, traps.
    formula = """\
M_run = (sum of the metric over the scored positions of run) / (number of scored positions)
  s = +1 when the metric is higher-is-better, -1 when lower-is-better (loss, kl)
for each circuit edge e:   drop_e = s * (M_circuit - M_circuit without e)
for random non-circuit edges r (random_edges of them, seeded; all if fewer):
                           drop_r = s * (M_circuit with r - M_circuit)
p_e = (1 + #{bootstrap draws: drop_e* <= max_r drop_r + 1e-6}) / (1 + #draws), Holm-adjusted over the edges
edge e is necessary when its adjusted p < alpha
estimate = (number of necessary edges) / (number of circuit edges)
"""
    example = """\
- id: head-path-minimal
  statement: Every edge of the head path is needed.
  kind: minimality
  circuit: head-path
  ablation: mean
  positions: Y
  metric: correct_prob
  threshold: {at_least: 1.0}
"""
    resamples = (
        "The estimate is exact (its interval is the estimate): the uncertainty lives in the per-edge p-values, from a "
        "bootstrap over sequences (1000 resamples, seeded by `seed`); each edge's drop also gets a 95% bootstrap "
        "interval over sequences in the details."
    )
    traps = (
        "Pass 'every edge necessary' with at_least: 1.0; a lower threshold tolerates redundant edges.",
        "An edge whose removal is compensated by another (redundancy) is reported as not necessary even when the pair "
        "matters; the details name the redundant edges.",
        "On a small model there may be fewer non-circuit edges than random_edges: all of them are used.",
    )

    kind: Literal["minimality"] = "minimality"
    random_edges: int = Field(default=100, ge=10, le=10_000, description="Random non-circuit edges compared with")
    seed: Seed = Field(default=0, description="Seed of the random edges and of the per-edge bootstrap")
    alpha: float = Field(default=0.05, gt=0.0, lt=1.0, description="An edge is necessary when its Holm p < alpha")

    def compile(self, ctx: CompileContext) -> ClaimPlan:
        import torch

        circuit = ctx.circuit(self.circuit)
        metric, mask, sign = self.scoring(ctx)
        edges, others = list(circuit.edges), list(circuit.removed)
        if not others:
            raise PlanError(ctx.path + ("circuit",), f"circuit {self.circuit!r} keeps every edge of the model: "
                            "there is no non-circuit edge to compare its edges with", "name a smaller circuit")
        gen = torch.Generator().manual_seed(self.seed)
        if len(others) > self.random_edges:
            others = [others[j] for j in sorted(torch.randperm(len(others), generator=gen)[: self.random_edges])]
        kept = frozenset(edges)
        runs: dict[str, EdgeRun] = {"circuit": self.edge_run(kept)}
        runs |= {f"without{i}": self.edge_run(kept - {e}) for i, e in enumerate(edges)}
        runs |= {f"with{j}": self.edge_run(kept | {r}) for j, r in enumerate(others)}

        def drops(t: Totals) -> torch.Tensor:
            return sign * (t["circuit"][..., None] - t["without"]) / t["n"][..., None]

        def score(out: ClaimOutputs) -> Measurement:
            n = mask.sum(1).double()
            circ = run_sums(metric, out, mask, "circuit")
            without = torch.stack([run_sums(metric, out, mask, f"without{i}") for i in range(len(edges))], 1)
            with_r = torch.stack([run_sums(metric, out, mask, f"with{j}") for j in range(len(others))], 1)
            stats = SequenceStats({"n": n, "circuit": circ, "without": without}, drops)
            edge_drop = stats.statistic(stats.totals())
            draws = stats.bootstrap(EDGE_BOOTSTRAP, self.seed)
            lo, hi = torch.nanquantile(draws, torch.tensor([0.025, 0.975], dtype=draws.dtype), dim=0)
            random_drop = sign * (with_r.sum(0) - circ.sum()) / n.sum()
            largest_random = float(random_drop.max()) + TIE_ATOL
            # A bootstrap p-value over sequences, not a rank among the random edges: with r random edges a rank
            # can never go below 1/(1+r), which Holm across a circuit's edges would push above any alpha.
            p = [(1 + int((~(draws[:, i] > largest_random)).sum())) / (1 + len(draws)) for i in range(len(edges))]
            adjusted = holm(p)
            per_edge = [
                {"edge": str(e), "drop": float(edge_drop[i]), "ci_low": float(lo[i]), "ci_high": float(hi[i]),
                 "p_value": p[i], "p_holm": adjusted[i], "necessary": adjusted[i] < self.alpha}
                for i, e in enumerate(edges)
            ]
            necessary = sum(a < self.alpha for a in adjusted)
            estimate = necessary / len(edges)
            redundant = [
                f"edge {e} is redundant (drop {_num(float(edge_drop[i]))} [{_num(float(lo[i]))}, {_num(float(hi[i]))}]"
                f", Holm p = {adjusted[i]:.3g})"
                for i, e in enumerate(edges) if adjusted[i] >= self.alpha
            ]
            found = (
                f"{necessary} of the {len(edges)} edge(s) of circuit {self.circuit!r} are necessary: removing each "
                f"drops {self.metric} more than removing any of {len(others)} random non-circuit edge(s) "
                f"(Holm alpha {self.alpha:g})"
            )
            found += "; " + "; ".join(redundant) if redundant else ""
            details = {
                "edges": per_edge, "n_random_edges": len(others), "random_drop_mean": float(random_drop.mean()),
                "random_drop_max": float(random_drop.max()), "n_examples": int(n.sum()), "ablation": self.ablation,
            }
            return Measurement(estimate, found, details, n_examples=int(n.sum()), exact=True)

        lines = self.plan_lines(ctx, runs, mask) + (
            f"{len(edges)} edge removal(s) against {len(others)} random non-circuit edge(s), seed {self.seed}",
        )
        return ClaimPlan(claim_id=self.id, kind=self.kind, variants={}, captures=frozenset(),
                         describe=lines, score=score, edge_runs=runs,
                         reads=reads([None, *runs], [metric], mask))
