"""Weight-based readings: direct-path query/key inputs of a head, built from the weights alone.

A token's input to layer ``L``'s attention is approximated by its direct path: the
token embedding plus the mean positional embedding (or the reverse for positions),
passed through that layer's ``ln1`` with its learned scale and bias. For a 1-layer
model this is exact up to the other summand being replaced by its mean.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from circuitcheck.plan.interventions import ClaimOutputs, ClaimPlan, Measurement

if TYPE_CHECKING:  # torch is imported where a model is needed: `validate` loads this module without it
    import torch


def ln1(model: Any, layer: int, x: torch.Tensor) -> torch.Tensor:
    return model.blocks[layer].ln1(x)


def token_inputs(model: Any, layer: int) -> torch.Tensor:
    """``[d_vocab, d_model]``: each token at an average position, after ``ln1``."""
    return ln1(model, layer, model.W_E + model.W_pos.mean(0))


def position_inputs(model: Any, layer: int) -> torch.Tensor:
    """``[n_ctx, d_model]``: each position holding an average token, after ``ln1``."""
    return ln1(model, layer, model.W_pos + model.W_E.mean(0))


def qk_scores(model: Any, layer: int, head: int, queries: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """Attention scores ``[n_queries, n_keys]`` of one head, scaled as in the forward pass."""
    q = queries @ model.W_Q[layer, head] + model.b_Q[layer, head]
    k = keys @ model.W_K[layer, head] + model.b_K[layer, head]
    return q @ k.T / model.cfg.d_head**0.5


def weight_plan(claim_id: str, kind: str, lines: tuple[str, ...], measure: Callable[[], Measurement]) -> ClaimPlan:
    """A plan with no forward pass: the measurement is computed from the weights."""
    import torch

    with torch.no_grad():
        measurement = measure()

    def score(out: ClaimOutputs) -> Measurement:
        return measurement

    return ClaimPlan(
        claim_id=claim_id, kind=kind, variants={}, captures=frozenset(),
        describe=lines + ("no forward pass: read from the weights",), score=score,
    )


def ov_matrix(model: Any, layer: int, head: int) -> torch.Tensor:
    """``W_V W_O`` of one head, ``[d_model, d_model]`` (row vectors: x @ W)."""
    return model.W_V[layer, head] @ model.W_O[layer, head]


def qk_matrix(model: Any, layer: int, head: int) -> torch.Tensor:
    """``W_Q W_K^T`` of one head, ``[d_model, d_model]``: score = x_q @ W @ x_k^T."""
    return model.W_Q[layer, head] @ model.W_K[layer, head].T
