"""A dataset of whole strings over a named vocabulary, e.g. seed 003's four XOR strings.

Each sequence is one string, drawn with the given weights (uniform by default);
one token per character unless the vocabulary has multi-character names, in which
case strings are lists of names. The strings and vocabulary come from the model
card's ``task`` block unless the hypothesis file lists them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from circuitcheck.data.batch import TokenBatch, next_tokens_of
from circuitcheck.data.registry import DataContext, DatasetSpec, dataset_kind
from circuitcheck.errors import PlanError
from circuitcheck.spec.base import Seed

if TYPE_CHECKING:  # torch is imported where tokens are built: `validate` loads this module without it
    import torch


def encode(strings: list[str] | list[list[str]], vocab: list[str]) -> torch.Tensor:
    """Token ids ``[n_strings, length]``; every string must have the same length."""
    import torch

    rows = [[vocab.index(ch) for ch in s] for s in strings]
    return torch.tensor(rows, dtype=torch.long)


@dataset_kind
class StringsDataset(DatasetSpec):
    """Sequences drawn (seeded, with replacement) from a fixed list of equal-length strings."""

    kind: Literal["strings"] = "strings"
    n_seqs: int = Field(gt=0, le=100_000)
    seed: Seed
    strings: list[str] | None = Field(
        default=None, min_length=1, description="Defaults to the model card's task.strings"
    )
    weights: list[float] | None = Field(default=None, description="Sampling weights, one per string (default uniform)")

    def build(self, ctx: DataContext) -> TokenBatch:
        import torch

        task = ctx.model_card.get("task") or {}
        vocab = task.get("vocab")
        strings = self.strings or task.get("strings")
        if not vocab or not strings:
            raise PlanError(
                ("dataset", "kind"),
                "the model card has no strings task (task.vocab and task.strings)",
                "use a model whose card lists them, e.g. xor",
            )
        unknown = sorted({ch for s in strings for ch in s} - set(vocab))
        if unknown:
            raise PlanError(("dataset", "strings"), f"characters {unknown} are not in the vocabulary {vocab}")
        if len({len(s) for s in strings}) != 1:
            raise PlanError(("dataset", "strings"), "the strings have different lengths", "give strings of one length")
        if len(strings[0]) > ctx.n_ctx:
            raise PlanError(
                ("dataset", "strings"), f"strings of {len(strings[0])} tokens exceed the model's n_ctx {ctx.n_ctx}"
            )
        weights = torch.tensor(self.weights if self.weights is not None else [1.0] * len(strings), dtype=torch.float64)
        if (
            len(weights) != len(strings)
            or not bool(torch.isfinite(weights).all())
            or (weights < 0).any()
            or weights.sum() <= 0
        ):
            raise PlanError(("dataset", "weights"), f"give {len(strings)} finite non-negative weights, not all zero")
        gen = torch.Generator().manual_seed(self.seed)
        picks = torch.multinomial(weights, self.n_seqs, replacement=True, generator=gen)
        tokens = encode(strings, vocab)[picks]
        params = self.model_dump() | {"strings": list(strings)}
        return TokenBatch(tokens, next_tokens_of(tokens), torch.zeros_like(tokens), params, token_names=tuple(vocab))
