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
from typing import TYPE_CHECKING, Any, Literal

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
    """Ensemble logits for every row, ``[n_rows, n_out]`` (float64: ties are read off them)."""
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
        return Fit(ensemble_logits(feats, pair, bigram, bias), float(objective()), calls)


# The best achievable top-1 agreement over every additive ensemble, exactly, where the feature space is small.
#
# Positions with the same features get the same ensemble logits: they form one *cell*. An ensemble gives each
# cell one top-1 class, so its agreement with a target (the model's top-1, or the label) is the count, over
# cells, of the cell's positions whose target is the class it gives. Which class per cell is possible is a
# question of strict linear separability (a linear program): the bound is the best count over every
# realisable choice, found by a depth-first search over cells that stops at the first infeasible choice
# (a choice that is infeasible stays so when more cells are added). Ties are no help: a tie between two
# classes at a cell can be broken either way without undoing the other cells' strict choices.

MAX_EXACT_FEATURES = 256
"""Features (bias, bigram, skip-trigram) above which the exact bound is not tried."""
MAX_EXACT_CHOICES = 1024
"""The search's worst case, prod over cells of (candidate classes + 1), above which it is not tried."""
_EPS = 1e-9


@dataclass(frozen=True)
class Cells:
    """Positions grouped by their feature set: ``of_row[i]`` is row i's cell, ``design[k]`` its features
    (bias, the current token, the skip-trigram features present) as a 0/1 row."""

    of_row: torch.Tensor
    design: torch.Tensor

    @property
    def n_cells(self) -> int:
        return int(self.design.shape[0])


def cells_of(feats: Features) -> Cells | None:
    """The cells of ``feats``' rows; None when the feature space is too large to treat exactly."""
    import torch

    if feats.n_features > MAX_EXACT_FEATURES:
        return None
    vocab = int(feats.current.max()) + 1
    dense = torch.zeros(feats.n_rows, 1 + vocab + feats.n_features, dtype=torch.uint8)
    dense[:, 0] = 1
    dense[torch.arange(feats.n_rows), 1 + feats.current] = 1
    # counts, not 0/1: with earlier positions ignored, a token seen twice adds its weight twice
    dense.index_put_((feats.rows, 1 + vocab + feats.cols), torch.ones_like(feats.rows, dtype=torch.uint8), True)
    unique, of_row = torch.unique(dense, dim=0, return_inverse=True)
    design = unique.double()
    return Cells(of_row, design[:, design.sum(0) > 0])


def separable(design: torch.Tensor, chosen: list[tuple[int, int]]) -> bool:
    """Whether some additive ensemble gives each cell ``k`` of ``chosen`` its class ``c`` as the strict top-1:
    weights ``W`` with ``(W[:, c] - W[:, j]) . design[k] >= 1`` for every other class ``j`` that ``chosen``
    uses (classes it does not use can be pushed down by their bias)."""
    import numpy as np

    classes = sorted({c for _, c in chosen})
    if len(classes) < 2:
        return True
    x = design.numpy()
    n_feat, last = x.shape[1], len(classes) - 1  # the last class's weights are fixed at 0 (only differences count)
    rows = []
    for k, c in chosen:
        ci = classes.index(c)
        for j in range(len(classes)):
            if j != ci:
                row = np.zeros(n_feat * last)
                if ci < last:
                    row[ci * n_feat:(ci + 1) * n_feat] += x[k]
                if j < last:
                    row[j * n_feat:(j + 1) * n_feat] -= x[k]
                rows.append(row)
    return _feasible(np.array(rows))


def _feasible(a: Any) -> bool:
    """Whether ``a @ w >= 1`` has a solution ``w`` (free): phase I of the simplex method, Bland's rule.

    Standard form ``[a, -a, -I] z + art = 1`` with ``z, art >= 0``; minimise ``sum(art)``, zero iff feasible.
    """
    import numpy as np

    m, n = a.shape
    cols = 2 * n + m
    tab = np.zeros((m + 1, cols + m + 1))
    tab[:m, :n], tab[:m, n:2 * n], tab[:m, 2 * n:cols] = a, -a, -np.eye(m)
    tab[:m, cols:cols + m] = np.eye(m)
    tab[:m, -1] = 1.0
    tab[m, :cols] = -tab[:m, :cols].sum(0)  # reduced costs of minimising sum(art), artificials basic
    tab[m, -1] = -float(m)
    basis = list(range(cols, cols + m))
    while True:
        entering = next((j for j in range(cols + m) if tab[m, j] < -_EPS), None)
        if entering is None:
            return -tab[m, -1] <= 1e-7
        column = tab[:m, entering]
        ratios = [(tab[i, -1] / column[i], basis[i], i) for i in range(m) if column[i] > _EPS]
        _, _, row = min(ratios)  # bounded: the objective is >= 0; ties by the lowest basic index (Bland)
        tab[row] /= tab[row, entering]
        for i in range(m + 1):
            if i != row and tab[i, entering] != 0.0:
                tab[i] -= tab[i, entering] * tab[row]
        basis[row] = entering


@dataclass(frozen=True)
class AdditiveBound:
    """Every realisable choice of classes, as 0/1 rows over ``pairs`` (a cell and a class its positions
    hold as targets): the best agreement of any additive ensemble is ``max(choices @ counts)``."""

    pairs: list[tuple[int, int]]
    choices: torch.Tensor
    programs: int
    """Linear programs solved."""

    def best(self, counts: torch.Tensor) -> torch.Tensor:
        """The best agreement count for ``counts [..., n_pairs]`` (positions per pair; bootstrap totals too)."""
        return (counts.double() @ self.choices.T).max(-1).values


def exact_bound(cells: Cells, targets: torch.Tensor) -> AdditiveBound | None:
    """The exact bound for ``targets [n_rows]`` (a class per row); None when the search would be too large."""
    import torch

    pairs = sorted(set(zip(cells.of_row.tolist(), targets.tolist(), strict=True)))
    candidates: list[list[int]] = [[] for _ in range(cells.n_cells)]
    for k, c in pairs:
        candidates[k].append(c)
    worst = 1
    for options in candidates:
        worst *= len(options) + 1
        if worst > MAX_EXACT_CHOICES:
            return None
    found: list[list[tuple[int, int]]] = []
    programs = 0

    def search(k: int, chosen: list[tuple[int, int]]) -> None:
        nonlocal programs
        if k == cells.n_cells:
            found.append(chosen)
            return
        for c in candidates[k]:
            programs += 1
            if separable(cells.design, chosen + [(k, c)]):
                search(k + 1, chosen + [(k, c)])
        search(k + 1, chosen)  # no target class at this cell

    search(0, [])
    index = {pair: i for i, pair in enumerate(pairs)}
    choices = torch.zeros(len(found), len(pairs), dtype=torch.float64)
    for r, chosen in enumerate(found):
        choices[r, [index[p] for p in chosen]] = 1.0
    return AdditiveBound(pairs, choices, programs)


TIE_TOLERANCE = 1e-9
"""Logits within this (relative) of the top one tie with it."""


def tie_credit(logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row, the credit of a top-1 prediction against ``target`` with ties counted explicitly: 1/k when
    the target is one of k classes tied at the top, 0 when it is not among them; and whether the row ties."""
    top = logits.max(-1, keepdim=True).values
    at_top = logits >= top - TIE_TOLERANCE * (1 + top.abs())
    k = at_top.sum(-1)
    return at_top.gather(-1, target[:, None]).squeeze(-1).double() / k, k > 1
