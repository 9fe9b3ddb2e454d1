"""The token batch every dataset produces: tokens plus per-position annotations.

Importing it needs no torch (tensors appear in annotations), so dataset and claim modules can
import it when ``circuitcheck validate`` loads them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

ROLE_NAMES: tuple[str, ...] = ("none", "X", "Y", "Z")
"""Role codes stored in :attr:`TokenBatch.roles`; index = code."""

NO_TARGET = -1
"""Marks positions with no next token (the last position of a sequence)."""


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

    def __post_init__(self) -> None:
        shape = self.tokens.shape
        if self.tokens.dim() != 2:
            raise ValueError(f"tokens must be [batch, seq], got shape {tuple(shape)}")
        for name in ("next_token", "roles"):
            other = getattr(self, name)
            if other.shape != shape:
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
