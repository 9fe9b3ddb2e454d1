"""The best bigram + skip-trigram ensemble for a model's own outputs (seed 003).

A skip-trigram feature is "token ``a`` at an earlier position, and token ``c`` at
the current one"; a bigram feature is "token ``c`` at the current position". The
ensemble's logits are a bias plus the sum of the weights of every feature present,
so fitting it to the model's output distribution is a convex softmax regression;
L-BFGS finds the optimum. Earlier positions can be told apart (``absolute``: "token
A at position P", the reading seed 003 uses), counted by offset, or ``ignored``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:  # torch is imported where the fit runs: `validate` loads this module without it
    import torch

EarlierPosition = Literal["absolute", "offset", "ignored"]


@dataclass(frozen=True)
class Features:
    """A sparse design: ``rows[i]`` holds feature ``cols[i]``; ``current`` is each row's own token."""

    rows: torch.Tensor
    cols: torch.Tensor
    current: torch.Tensor
    n_rows: int
    n_features: int


def skip_trigram_features(tokens: torch.Tensor, mask: torch.Tensor, earlier: EarlierPosition) -> Features:
    """Features of every masked position ``(b, p)``: (where, token at j, token at p) for each j < p."""
    import torch

    vocab = int(tokens.max()) + 1
    seq = tokens.shape[1]
    b_idx, p_idx = mask.nonzero(as_tuple=True)
    j = torch.arange(seq)
    before = j[None, :] < p_idx[:, None]  # [rows, seq]
    row, jj = before.nonzero(as_tuple=True)
    where = {"absolute": jj, "offset": p_idx[row] - jj, "ignored": torch.zeros_like(jj)}[earlier]
    current = tokens[b_idx, p_idx]
    keys = (where * vocab + tokens[b_idx[row], jj]) * vocab + current[row]
    unique, cols = torch.unique(keys, return_inverse=True)
    return Features(row, cols, current, len(b_idx), len(unique))


def ensemble_logits(
    feats: Features, pair: torch.Tensor, bigram: torch.Tensor, bias: torch.Tensor, rows: torch.Tensor | None = None
) -> torch.Tensor:
    """Logits ``[n_rows, n_out]`` of the ensemble (only ``rows`` when given)."""
    out = (bias + bigram[feats.current]).index_add(0, feats.rows, pair[feats.cols])
    return out if rows is None else out[rows]


@dataclass(frozen=True)
class Fit:
    logits: torch.Tensor
    """Ensemble logits for every row, ``[n_rows, n_out]``."""
    loss: float
    iterations: int


def fit_ensemble(feats: Features, target_logprobs: torch.Tensor, train: torch.Tensor, l2: float, max_iter: int) -> Fit:
    """Minimise cross-entropy to the target distribution on the ``train`` rows (plus an L2 penalty)."""
    import torch

    n_out = target_logprobs.shape[-1]
    vocab = int(feats.current.max()) + 1
    target = target_logprobs.double().exp()[train]
    pair = torch.zeros(feats.n_features, n_out, dtype=torch.float64, requires_grad=True)
    bigram = torch.zeros(vocab, n_out, dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(n_out, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS(
        [pair, bigram, bias],
        max_iter=max_iter,
        tolerance_grad=1e-9,
        tolerance_change=1e-12,
        line_search_fn="strong_wolfe",
    )
    calls = 0

    def objective() -> torch.Tensor:
        logits = ensemble_logits(feats, pair, bigram, bias)[train]
        return -(target * logits.log_softmax(-1)).sum(-1).mean() + l2 * (pair.square().sum() + bigram.square().sum())

    def closure() -> torch.Tensor:
        nonlocal calls
        calls += 1
        opt.zero_grad()
        loss = objective()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    with torch.no_grad():
        return Fit(ensemble_logits(feats, pair, bigram, bias).float(), float(objective()), calls)
