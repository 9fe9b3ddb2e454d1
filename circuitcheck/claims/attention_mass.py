"""How much of a head's attention goes from a class of query positions to a class of key positions.

CLAIMS.md C3 ("head 1.0 attends mostly to the 3rd character of words") and X2
("head 0 attends to B when B is present"). For each query position the mass is the
head's total attention on the key positions the ``keys`` selection holds in the
same sequence; estimate = the mean mass over query positions. The report also
splits the mass by every role the dataset annotates. With ``more_than_roles``,
"mostly" is read as a plurality: estimate = the mass on ``keys`` minus the largest
mass on any of those roles (positive: the keys win).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from circuitcheck.claims.base import ClaimSpec, CompileContext, claim_kind
from circuitcheck.errors import PlanError
from circuitcheck.plan.interventions import ClaimOutputs, ClaimPlan, Measurement
from circuitcheck.spec.base import RelativeKey
from circuitcheck.spec.components import HeadRef
from circuitcheck.spec.references import Selection
from circuitcheck.stats import SequenceStats, Totals, per_sequence, safe_ratio

if TYPE_CHECKING:  # torch is imported where a model is needed: `validate` loads this module without it
    import torch


def key_mass(pattern: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """``[batch, query]`` attention mass on the key positions ``keys [batch, key]`` marks."""
    import torch

    return torch.einsum("bqk,bk->bq", pattern.double(), keys.double())


def offset_mass(pattern: torch.Tensor, offset: int) -> torch.Tensor:
    """``[batch, query]`` attention from each query to the key ``offset`` positions away (0 where there is none)."""
    import torch

    queries = torch.arange(pattern.shape[-1])
    have = queries + offset >= 0
    mass = torch.zeros(pattern.shape[:2], dtype=torch.float64)
    mass[:, have] = pattern[:, queries[have], queries[have] + offset].double()
    return mass


@claim_kind
class AttentionMassClaim(ClaimSpec):
    """A head's attention from ``queries`` goes to ``keys``: the mean attention mass (or its margin over roles)."""

    # The kind's reference (`circuitcheck docs KIND`): exact estimate, interval, a worked example, traps.
    formula = """\
A = the head's attention pattern in the clean run; for a query position q,
  keys a selection:     mass(q) = sum over key positions k of the same sequence in `keys` of A[q, k]
  keys {offset: o}:     mass(q) = A[q, q + o]   (queries with no key o positions back are left out)
estimate = (sum over query positions q in `queries` of mass(q)) / (number of query positions)
with more_than_roles [r1, r2, ...]:
  estimate = (the mass above) - max over r of (mean over the same queries of the mass on positions of role r)
  (positive: the keys get more attention than any of the listed roles)
"""
    example = """\
- id: previous-X
  statement: From Y the head attends mostly to the X of the trigram.
  kind: attention_mass
  head: "0.0"
  queries: Y
  keys: X
  threshold: {at_least: 0.5}
"""
    resamples = (
        "Sequences: a percentile bootstrap (statistics.bootstrap resamples, seeded) draws sequences with replacement "
        "and recomputes the estimate from the drawn sequences' totals, every numerator and denominator from the same "
        "draw. Each role's mass is resampled with the keys' mass, and the max over roles is taken per resample."
    )
    traps = (
        "A `keys` selection is a set of positions in the whole sequence, not relative to each query: a key after the "
        "query gets no attention (causal mask). For 'the previous token' write keys: {offset: -1}.",
        "'Mostly' as a majority is at_least: 0.5 on the mass; as a plurality it is more_than_roles with at_least: 0 "
        "(the margin).",
        "more_than_roles names roles the dataset annotates (a PlanError lists them); the details give the mass on "
        "every role.",
    )

    kind: Literal["attention_mass"] = "attention_mass"
    head: HeadRef = Field(description="'L.H'")
    queries: Selection = Field(description="Selection of query positions")
    keys: Selection | RelativeKey = Field(
        description="Selection of key positions (in the same sequence), or the key relative to each query: "
        "{offset: -1} is the previous position"
    )
    more_than_roles: list[str] | None = Field(
        default=None, min_length=1, description="Estimate the margin over the largest mass on any of these roles"
    )

    supports_floor = True

    def compile(self, ctx: CompileContext) -> ClaimPlan:
        layer, head = ctx.head_ref(self.head, "head")
        queries = ctx.masks[ctx.selection(self.queries, "queries")]
        offset = self.keys.offset if isinstance(self.keys, RelativeKey) else 0
        if isinstance(self.keys, RelativeKey):
            queries = queries.clone()
            queries[:, : -offset or 0] = False  # no key that far back
            if not queries.any():
                raise PlanError(ctx.path + ("keys", "offset"),
                                f"no query in '{self.queries}' has a key {-offset} position(s) before it",
                                "use a smaller offset, or queries further into the sequence")
            keys = None
        else:
            keys = ctx.masks[ctx.selection(self.keys, "keys")]
        hook = f"blocks.{layer}.attn.hook_pattern"
        batch = ctx.batch
        rivals = self.more_than_roles or []
        for i, role in enumerate(rivals):
            if role not in batch.role_names[1:]:
                raise PlanError(
                    ctx.path + ("more_than_roles", i),
                    f"this dataset annotates no role {role!r}",
                    f"use one of: {', '.join(batch.role_names[1:])}",
                )

        def score(out: ClaimOutputs) -> Measurement:
            pattern = out.captured[hook][:, head]
            mass = key_mass(pattern, keys) if keys is not None else offset_mass(pattern, offset)
            per_seq = {"mass": per_sequence(mass[queries], queries), "n": queries.sum(1).double()}
            for role in rivals:
                per_seq[role] = per_sequence(key_mass(pattern, batch.role_mask(role))[queries], queries)
            stats = SequenceStats(per_seq, lambda t: _margin(t, rivals))
            by_role = {
                f"mass_on_role_{name}": float(key_mass(pattern, batch.roles == code)[queries].mean())
                for code, name in enumerate(batch.role_names)
                if code and (batch.roles == code).any()
            }
            estimate = stats.estimate()
            share = float(mass[queries].mean())
            found = (
                f"head {self.head} puts {share:.3f} of its attention from '{self.queries}' on '{self.keys}' (mean over "
                f"{int(queries.sum())} query positions)"
            )
            if rivals:
                found += f"; {estimate:+.3f} more than on the most attended of roles {', '.join(rivals)}"
            details = {
                "mass_on_keys": share,
                "n_queries": int(queries.sum()),
                "n_sequences": int(queries.any(1).sum()),
            } | by_role
            return Measurement(estimate, found, details, stats, None if rivals else mass[queries].float())

        lines = (
            f"clean run; capture {hook}",
            f"mean attention mass of head {self.head} from '{self.queries}' ({int(queries.sum())} positions) to "
            f"'{self.keys}'",
        )
        return ClaimPlan(
            claim_id=self.id, kind=self.kind, variants={}, captures=frozenset({hook}), describe=lines, score=score
        )


def _margin(t: Totals, rivals: list[str]) -> torch.Tensor:
    import torch

    mass = safe_ratio(t["mass"], t["n"])
    if not rivals:
        return mass
    return mass - torch.stack([safe_ratio(t[r], t["n"]) for r in rivals]).max(0).values
