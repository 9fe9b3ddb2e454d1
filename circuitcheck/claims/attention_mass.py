"""How much of a head's attention goes from a class of query positions to a class of key positions.

CLAIMS.md C3 ("head 1.0 attends mostly to the 3rd character of words") and X2
("head 0 attends to B when B is present"). For each query position the mass is the
head's total attention on the key positions the ``keys`` selection holds in the
same sequence; estimate = the mean mass over query positions. The report also
splits the mass by every role the dataset annotates, so "mostly" can be read
against the alternatives.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from circuitcheck.claims.base import ClaimSpec, CompileContext, claim_kind
from circuitcheck.claims.weight_common import parse_head
from circuitcheck.plan.interventions import ClaimOutputs, ClaimPlan, Measurement
from circuitcheck.run.stats import SequenceStats, per_sequence, safe_ratio


def key_mass(pattern: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """``[batch, query]`` attention mass on the key positions ``keys [batch, key]`` marks."""
    return torch.einsum("bqk,bk->bq", pattern.double(), keys.double())


@claim_kind
class AttentionMassClaim(ClaimSpec):
    kind: Literal["attention_mass"] = "attention_mass"
    head: str = Field(description="'L.H'")
    queries: str = Field(description="Selection of query positions")
    keys: str = Field(description="Selection of key positions (in the same sequence)")

    supports_floor = True

    def compile(self, ctx: CompileContext) -> ClaimPlan:
        layer, head = parse_head(ctx, self.head, "head")
        queries = ctx.masks[ctx.selection(self.queries, "queries")]
        keys = ctx.masks[ctx.selection(self.keys, "keys")]
        hook = f"blocks.{layer}.attn.hook_pattern"
        batch = ctx.batch

        def score(out: ClaimOutputs) -> Measurement:
            pattern = out.captured[hook][:, head]
            mass = key_mass(pattern, keys)
            per_seq = {"mass": per_sequence(mass[queries], queries), "n": queries.sum(1).double()}
            stats = SequenceStats(per_seq, lambda t: safe_ratio(t["mass"], t["n"]))
            by_role = {
                f"mass_on_role_{name}": float(key_mass(pattern, batch.roles == code)[queries].mean())
                for code, name in enumerate(batch.role_names)
                if code and (batch.roles == code).any()
            }
            estimate = stats.estimate()
            found = f"head {self.head} puts {estimate:.3f} of its attention from '{self.queries}' on '{self.keys}' (mean over {int(queries.sum())} query positions)"
            details = {"n_queries": int(queries.sum()), "n_sequences": int(queries.any(1).sum())} | by_role
            return Measurement(estimate, found, details, stats, mass[queries].float())

        lines = (
            f"clean run; capture {hook}",
            f"mean attention mass of head {self.head} from '{self.queries}' ({int(queries.sum())} positions) to '{self.keys}'",
        )
        return ClaimPlan(self.id, self.kind, {}, frozenset({hook}), lines, score)
