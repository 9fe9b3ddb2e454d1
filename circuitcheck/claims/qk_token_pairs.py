"""The token-token QK circuit recovers declared (query, key) pairs (CLAIMS.md T3).

For each query token, its declared keys should be among its top-scoring keys, where
"top" means as many keys as it has declared (``top_k: per_query``) or a fixed ``k``.
estimate = recovered pairs / declared pairs. Read from the weights; no sampling.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Literal

from pydantic import Field

from circuitcheck.claims.base import ClaimSpec, CompileContext, claim_kind
from circuitcheck.claims.weight_common import qk_scores, token_inputs, weight_plan
from circuitcheck.errors import PlanError
from circuitcheck.plan.interventions import ClaimPlan, Measurement


@claim_kind
class QKTokenPairsClaim(ClaimSpec):
    """A head's token-token QK circuit ranks declared keys first for their queries: the pairs recovered."""

    # The kind's reference (`circuitcheck docs KIND`): exact estimate, interval, a worked example, traps.
    formula = """\
E = ln1(W_E + mean over positions of W_pos)   (each token at an average position, after the layer's ln1)
S = (E W_Q + b_Q) (E W_K + b_K)^T / sqrt(d_head)        (query token, key token)
K_q = the declared keys of query token q (pairs: trigram_prefixes gives (Y, X) for every trigram in the card)
k_q = |K_q| (top_k: per_query) or top_k
estimate = (sum over q of |K_q & (the k_q keys with the highest S[q])|) / (sum over q of |K_q|)
"""
    example = """\
- id: T3
  statement: For the query W_E[Y], the keys W_E[X] of its trigrams are among its top-scoring keys.
  kind: qk_token_pairs
  layer: 0
  head: 0
  pairs: trigram_prefixes
  top_k: per_query
  threshold: {at_least: 0.5}
"""
    resamples = (
        "Nothing: it is read from the weights, so the interval is the estimate itself."
    )
    traps = (
        "Pairs are [query, key]; trigram_prefixes reads (Y, X) from the model card, so it needs a card with trigrams.",
        "Chance is k_q / d_vocab per pair (about 4% on the trigram model), not 0.5.",
        "A pair declared twice counts once.",
    )

    kind: Literal["qk_token_pairs"] = "qk_token_pairs"
    layer: int = Field(ge=0)
    head: int = Field(ge=0)
    pairs: Literal["trigram_prefixes"] | list[tuple[int, int]] = Field(
        description="[query, key] token pairs, or trigram_prefixes: (Y, X) for every trigram in the model card"
    )
    top_k: Literal["per_query"] | int = Field(default="per_query", description="How many top keys count as recovered")

    def _pairs(self, ctx: CompileContext) -> list[tuple[int, int]]:
        if self.pairs != "trigram_prefixes":
            return [(int(q), int(k)) for q, k in self.pairs]
        trigrams = ctx.card.get("task", {}).get("trigrams")
        if not trigrams:
            raise PlanError(
                ctx.path + ("pairs",), "the model card lists no trigrams", "give explicit [query, key] pairs"
            )
        return [(y, x) for x, y, _ in trigrams]

    def compile(self, ctx: CompileContext) -> ClaimPlan:
        ctx.head(self.layer, self.head)
        pairs = self._pairs(ctx)
        vocab = int(ctx.model.cfg.d_vocab)
        if any(not (0 <= t < vocab) for pair in pairs for t in pair):
            raise PlanError(ctx.path + ("pairs",), f"token ids must lie in [0, {vocab})")
        keys_of: dict[int, set[int]] = defaultdict(set)
        for q, k in pairs:
            keys_of[q].add(k)

        def measure() -> Measurement:
            e = token_inputs(ctx.model, self.layer)
            scores = qk_scores(ctx.model, self.layer, self.head, e, e)
            hits = 0
            for q, keys in keys_of.items():
                k = len(keys) if self.top_k == "per_query" else int(self.top_k)
                hits += len(keys & set(scores[q].topk(min(k, vocab)).indices.tolist()))
            total = sum(len(v) for v in keys_of.values())
            rate = hits / total
            found = (
                f"{hits} of {total} declared (query, key) pairs are among their query's top keys in head "
                f"{self.layer}.{self.head}'s QK circuit"
            )
            details = {
                "recovered": hits,
                "pairs": total,
                "queries": len(keys_of),
                "chance": _chance(keys_of, self.top_k, vocab),
            }
            return Measurement(rate, found, details, exact=True)

        lines = (
            f"token-token QK of head {self.layer}.{self.head}: {len(pairs)} declared pairs over {len(keys_of)} query "
            f"tokens; top_k {self.top_k}",
        )
        return weight_plan(self.id, self.kind, lines, measure)


def _chance(keys_of: dict[int, set[int]], top_k: str | int, vocab: int) -> float:
    """The expected recovery rate of a random score table (for the report)."""
    total = sum(len(v) for v in keys_of.values())
    expected = sum(
        len(v) * min(len(v) if top_k == "per_query" else int(top_k), vocab) / vocab for v in keys_of.values()
    )
    return expected / total
