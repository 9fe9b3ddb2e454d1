"""The token batch every dataset produces: tokens plus per-position annotations.

Importing it needs no torch (tensors appear in annotations), so dataset and claim modules can
import it when ``circuitcheck validate`` loads them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import torch

ROLE_NAMES: tuple[str, ...] = ("none", "X", "Y", "Z")
"""Role codes stored in :attr:`TokenBatch.roles`; index = code."""

NO_TARGET = -1
"""Marks positions with no next token (the last position of a sequence)."""


class Refill(Protocol):
    """How a dataset of filled templates rebuilds its tokens with some slot occurrences refilled with fresh
    words (the ``refill`` corruption); :mod:`circuitcheck.data.prompts` provides one."""

    @property
    def occurrences(self) -> tuple[str, ...]:
        """The roles that can be refilled: one per slot occurrence (``A``, ``B``, ``B2``)."""

    def problem(self, occurrences: Sequence[str]) -> str | None:
        """Why ``occurrences`` cannot be refilled (too few words left in a list), or None."""

    def __call__(self, occurrences: Sequence[str], seed: int) -> torch.Tensor:
        """Tokens ``[batch, seq]``: the same prompts with ``occurrences`` refilled, drawn from ``seed``."""


@dataclass(frozen=True)
class TokenBatch:
    """Tokens ``[batch, seq]`` with aligned per-position annotations.

    ``next_token[b, p]`` is the correct prediction at position ``p`` (the token at
    ``p + 1`` for language modelling, a label for classification tasks), or
    :data:`NO_TARGET` where there is none. ``roles[b, p]`` indexes ``role_names``
    (:data:`ROLE_NAMES` unless the dataset names its own); datasets without roles
    leave it all zeros. ``token_names`` lets hypothesis files name tokens ("B").
    """

    tokens: torch.Tensor
    next_token: torch.Tensor
    roles: torch.Tensor
    params: dict[str, object] = field(default_factory=dict)
    role_names: tuple[str, ...] = ROLE_NAMES
    token_names: tuple[str, ...] | None = None
    tables: dict[str, torch.Tensor] = field(default_factory=dict)
    """Exact reference tables ``[d_vocab, n_labels]`` the generator knows, e.g. P(label | token at position 0)."""
    counterfactual: torch.Tensor | None = None
    """``[batch, seq]``: the token ``logit_diff`` subtracts where the dataset names one (the wrong answer of a
    prompt, at its last position), :data:`NO_TARGET` elsewhere; None for datasets that name none."""
    refill: Refill | None = None
    """Rebuilds the tokens with slot occurrences refilled (``prompts`` datasets); None elsewhere."""

    def __post_init__(self) -> None:
        shape = self.tokens.shape
        if self.tokens.dim() != 2:
            raise ValueError(f"tokens must be [batch, seq], got shape {tuple(shape)}")
        for name in ("next_token", "roles", "counterfactual"):
            other = getattr(self, name)
            if other is not None and other.shape != shape:
                raise ValueError(
                    f"{name} has shape {tuple(other.shape)} but tokens have {tuple(shape)}"
                )

    @property
    def n_seqs(self) -> int:
        return int(self.tokens.shape[0])

    @property
    def seq_len(self) -> int:
        return int(self.tokens.shape[1])

    def role_mask(self, role: str) -> torch.Tensor:
        return self.roles == self.role_names.index(role)

    def token_id(self, token: int | str) -> int:
        """A token given by id or by name; ``KeyError`` names the known tokens."""
        if isinstance(token, int):
            return token
        if self.token_names is None or token not in self.token_names:
            known = ", ".join(self.token_names or ()) or "none: this dataset names no tokens, give ids"
            raise KeyError(f"unknown token {token!r} (known: {known})")
        return self.token_names.index(token)


def next_tokens_of(tokens: torch.Tensor) -> torch.Tensor:
    """The shifted-by-one targets for a token tensor, with NO_TARGET at the end."""
    import torch

    nxt = torch.full_like(tokens, NO_TARGET)
    nxt[:, :-1] = tokens[:, 1:]
    return nxt
