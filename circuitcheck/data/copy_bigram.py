"""A task with a bigram part and a copying part, for the framework claims (seed 004, F2/F3).

Each next token is, independently: with probability ``p_bigram`` the fixed successor
of the current token (``successor(t) = (7 t + 3) mod V``, a permutation: a bigram
statistic the direct path W_U W_E can hold); with probability ``p_copy`` a copy of a
uniformly chosen earlier token (what an attention head with a copying OV circuit
does); otherwise uniform. ``roles`` mark, at each position, how the *next* token was
made, so claims can select "positions where the answer is a bigram" or "a copy".
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from circuitcheck.data.batch import NO_TARGET, TokenBatch
from circuitcheck.data.registry import DataContext, DatasetSpec, dataset_kind
from circuitcheck.errors import PlanError
from circuitcheck.spec.base import Seed

if TYPE_CHECKING:  # torch is imported where tokens are built: `validate` loads this module without it
    import torch

ROLE_NAMES = ("none", "bigram", "copy", "random")


def successor(tokens: torch.Tensor, vocab: int) -> torch.Tensor:
    return (7 * tokens + 3) % vocab


def generate_copy_bigram(
    n_seqs: int, seq_len: int, vocab: int, p_bigram: float, p_copy: float, seed: int
) -> TokenBatch:
    import torch

    gen = torch.Generator().manual_seed(seed)
    tokens = torch.empty(n_seqs, seq_len, dtype=torch.long)
    roles = torch.zeros(n_seqs, seq_len, dtype=torch.long)
    tokens[:, 0] = torch.randint(0, vocab, (n_seqs,), generator=gen)
    rows = torch.arange(n_seqs)
    for p in range(1, seq_len):
        u = torch.rand(n_seqs, generator=gen)
        earlier = tokens[rows, (torch.rand(n_seqs, generator=gen) * p).long()]
        uniform = torch.randint(0, vocab, (n_seqs,), generator=gen)
        how = torch.where(u < p_bigram, 1, torch.where(u < p_bigram + p_copy, 2, 3))
        tokens[:, p] = torch.where(
            how == 1, successor(tokens[:, p - 1], vocab), torch.where(how == 2, earlier, uniform)
        )
        roles[:, p - 1] = how
    nxt = torch.full_like(tokens, NO_TARGET)
    nxt[:, :-1] = tokens[:, 1:]
    return TokenBatch(tokens, nxt, roles, role_names=ROLE_NAMES)


@dataset_kind
class CopyBigramDataset(DatasetSpec):
    """The copy + bigram task; its parameters come from the model card's ``task`` block."""

    kind: Literal["copy_bigram"] = "copy_bigram"
    n_seqs: int = Field(gt=0, le=100_000)
    seed: Seed

    def build(self, ctx: DataContext) -> TokenBatch:
        task = ctx.model_card.get("task") or {}
        if task.get("kind") != "copy_bigram":
            raise PlanError(
                ("dataset", "kind"),
                "the model card has no copy_bigram task",
                "use a model trained on it, e.g. framework-1l",
            )
        if not 0 < int(task["seq_len"]) <= ctx.n_ctx:  # checked before generating: the card sets the size
            raise PlanError(
                ("dataset",), f"the model card's task.seq_len {task['seq_len']} is not in 1..n_ctx ({ctx.n_ctx})"
            )
        batch = generate_copy_bigram(
            self.n_seqs,
            int(task["seq_len"]),
            int(task["d_vocab"]),
            float(task["p_bigram"]),
            float(task["p_copy"]),
            self.seed,
        )
        params = self.model_dump() | {k: task[k] for k in ("p_bigram", "p_copy", "seq_len")}
        return TokenBatch(batch.tokens, batch.next_token, batch.roles, params, role_names=ROLE_NAMES)
