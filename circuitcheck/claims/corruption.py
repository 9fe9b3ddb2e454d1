"""Corruptions: how a claim's corrupted input is made from the clean tokens, chosen by ``scheme``.

- ``resample_tokens`` (any dataset): each token at ``positions`` becomes a different uniform random token.
- ``refill`` (``prompts`` datasets): the same prompts with the words at the listed slot occurrences
  replaced by fresh words from their lists (IOI's "ABC" corruption: ``slots: [A, B, B2]``). The dataset
  rebuilds the text and tokenizes it (:attr:`circuitcheck.data.batch.TokenBatch.refill`).

Each scheme gives the corrupted tokens and the positions it changes (the vacuity check follows what
they reach), and describes itself for reports.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field

from circuitcheck.errors import PlanError
from circuitcheck.plan.context import CompileContext
from circuitcheck.spec.base import Seed, Strict
from circuitcheck.spec.references import Selection

if TYPE_CHECKING:
    import torch

__all__ = ["Corruption", "RefillSlots", "ResampleTokens", "corrupt_tokens"]


def corrupt_tokens(tokens: torch.Tensor, mask: torch.Tensor, d_vocab: int, seed: int) -> torch.Tensor:
    import torch

    gen = torch.Generator().manual_seed(seed)
    # Adding 1..d_vocab-1 modulo d_vocab always lands on a different token.
    shift = torch.randint(1, d_vocab, tokens.shape, generator=gen)
    return torch.where(mask, (tokens + shift) % d_vocab, tokens)


class ResampleTokens(Strict):
    """``resample_tokens``: each token at ``positions`` becomes a different uniform random token."""

    scheme: Literal["resample_tokens"]
    positions: Selection
    seed: Seed

    @property
    def where(self) -> str:
        return f"'{self.positions}'"

    @property
    def action(self) -> str:
        return f"resampling the tokens at {self.where} (seed {self.seed})"

    def describe(self) -> str:
        return f"{self.scheme} at '{self.positions}' (seed {self.seed})"

    def changed(self, ctx: CompileContext, field: str) -> torch.Tensor:
        """The positions this corruption changes; ``field`` is the claim's key holding it."""
        return ctx.masks[ctx.selection(self.positions, field)]

    def tokens(self, ctx: CompileContext, field: str) -> torch.Tensor:
        return corrupt_tokens(ctx.batch.tokens, self.changed(ctx, field), int(ctx.model.cfg.d_vocab), self.seed)


class RefillSlots(Strict):
    """``refill`` (``prompts`` datasets): the listed slot occurrences get fresh words from their lists, distinct
    from each other and from the words the prompt already takes from those lists; all else stays."""

    scheme: Literal["refill"]
    slots: list[str] = Field(
        min_length=1, description="Slot occurrences (roles) to refill: A, B, B2 (the second occurrence of B)"
    )
    seed: Seed

    @property
    def where(self) -> str:
        return f"slots {', '.join(self.slots)}"

    @property
    def action(self) -> str:
        return f"refilling {self.where} (seed {self.seed})"

    def describe(self) -> str:
        return f"{self.scheme} of {self.where} (seed {self.seed})"

    def changed(self, ctx: CompileContext, field: str) -> torch.Tensor:
        import torch

        refill = ctx.batch.refill
        if refill is None:
            kind = ctx.batch.params.get("kind", "this")
            raise PlanError(
                ctx.path + (field, "scheme"),
                f"'refill' refills the slots of a 'prompts' dataset; the {kind!r} dataset has no slots",
                "use {scheme: resample_tokens, positions: ..., seed: ...}, or a 'prompts' dataset",
            )
        for i, slot in enumerate(self.slots):
            if slot not in refill.occurrences:
                raise PlanError(
                    ctx.path + (field, "slots", i),
                    f"the dataset has no slot occurrence {slot!r}",
                    f"use one of: {', '.join(refill.occurrences)}",
                )
        if len(set(self.slots)) < len(self.slots):
            raise PlanError(ctx.path + (field, "slots"), "a slot occurrence is listed twice", "list each once")
        why = refill.problem(self.slots)
        if why is not None:
            raise PlanError(ctx.path + (field, "slots"), why, "refill fewer slots, or add words to the list")
        mask = torch.zeros_like(ctx.batch.roles, dtype=torch.bool)
        for slot in self.slots:
            mask |= ctx.batch.role_mask(slot)
        return mask

    def tokens(self, ctx: CompileContext, field: str) -> torch.Tensor:
        self.changed(ctx, field)
        assert ctx.batch.refill is not None  # changed() refused a dataset without one
        return ctx.batch.refill(self.slots, self.seed)


Corruption = Annotated[ResampleTokens | RefillSlots, Field(discriminator="scheme")]
"""A claim's corruption, tagged by ``scheme``."""
