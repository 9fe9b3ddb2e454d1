"""Repeated random sequences, the induction task: a BOS token, ``length`` random tokens, then the same tokens again.

The first copy's tokens are distinct (drawn without replacement from the content tokens
``0 .. n_tokens - 1``), so each token of the second copy has exactly one earlier occurrence and
the token after it is the one correct answer. Roles mark each position: ``bos`` (position 0),
``first`` (the first copy) and ``second`` (the repeated copy, where an induction head predicts the
next token; its last position has no target). The BOS id and the number of content tokens come
from the model card's ``task`` block.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from circuitcheck.data.batch import NO_TARGET, TokenBatch
from circuitcheck.data.registry import DataContext, DatasetSpec, dataset_kind
from circuitcheck.errors import PlanError
from circuitcheck.spec.base import Seed

ROLE_NAMES = ("none", "bos", "first", "second")


def generate_repeated(n_seqs: int, length: int, n_tokens: int, bos: int, seed: int) -> TokenBatch:
    """``[n_seqs, 2 * length + 1]`` tokens: BOS, ``length`` distinct random tokens, the same tokens again."""
    import torch

    if not 0 < length <= n_tokens:
        raise ValueError(f"length {length} must be in 1..n_tokens ({n_tokens}): the first copy's tokens are distinct")
    gen = torch.Generator().manual_seed(seed)
    prefix = torch.rand(n_seqs, n_tokens, generator=gen).argsort(1)[:, :length]
    tokens = torch.cat([torch.full((n_seqs, 1), bos, dtype=torch.long), prefix, prefix], 1)
    roles = torch.empty_like(tokens)
    roles[:, 0] = ROLE_NAMES.index("bos")
    roles[:, 1 : length + 1] = ROLE_NAMES.index("first")
    roles[:, length + 1 :] = ROLE_NAMES.index("second")
    nxt = torch.full_like(tokens, NO_TARGET)
    nxt[:, :-1] = tokens[:, 1:]
    return TokenBatch(tokens, nxt, roles, role_names=ROLE_NAMES)


@dataset_kind
class RepeatedDataset(DatasetSpec):
    """BOS, a random sequence of distinct tokens, the same sequence again; the vocabulary comes from the card."""

    kind: Literal["repeated"] = "repeated"
    n_seqs: int = Field(gt=0, le=100_000)
    seed: Seed
    length: int | None = Field(
        default=None, gt=0, description="Tokens in each copy; default: the model card's task.length"
    )

    def build(self, ctx: DataContext) -> TokenBatch:
        task = ctx.model_card.get("task") or {}
        if task.get("kind") != "repeated":
            raise PlanError(
                ("dataset", "kind"),
                "the model card has no repeated task",
                "use a model built for it, e.g. induction",
            )
        length = self.length or int(task["length"])
        if 2 * length + 1 > ctx.n_ctx:
            raise PlanError(
                ("dataset", "length"),
                f"BOS and two copies of {length} tokens need {2 * length + 1} positions; the model's n_ctx is "
                f"{ctx.n_ctx}",
                f"use a length of at most {(ctx.n_ctx - 1) // 2}",
            )
        n_tokens = int(task["n_tokens"])
        if length > n_tokens:
            raise PlanError(
                ("dataset", "length"),
                f"length {length} exceeds the {n_tokens} content tokens; the first copy's tokens are distinct",
            )
        batch = generate_repeated(self.n_seqs, length, n_tokens, int(task["bos"]), self.seed)
        params = self.model_dump() | {"length": length, "n_tokens": n_tokens, "bos": task["bos"]}
        return TokenBatch(batch.tokens, batch.next_token, batch.roles, params, role_names=ROLE_NAMES)
