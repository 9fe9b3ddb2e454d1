"""Jacobian linearisation of an MLP (seed 002's T6 rung).

f(x) ~ J x + b. ``median`` (seed 002): J is the elementwise median of the
per-example Jacobians of x -> MLP(LN2(x)) over the fitting examples and b the
elementwise median of f(x_i) - J x_i: a linear map typical of the data rather than
exact anywhere. ``mean``: means instead (pulled by the rare large Jacobians where the
MLP fires, which is why the seed preferred the median). ``at_mean_input``: the
first-order Taylor expansion at the mean input.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

MAX_FIT_EXAMPLES = 512


def fit_jacobian(
    fn: Callable[[torch.Tensor], torch.Tensor], inputs: torch.Tensor, how: str = "median"
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(J [d_out, d_in], b [d_out])`` fitted on ``MAX_FIT_EXAMPLES`` rows of ``inputs`` spread
    evenly over it."""
    rows = torch.linspace(0, len(inputs) - 1, min(len(inputs), MAX_FIT_EXAMPLES)).round().long()
    xs = inputs[rows].detach().float()
    if how == "at_mean_input":
        xs = xs.mean(0, keepdim=True)
    jacobians = rowwise_jacobians(fn, xs)
    reduce = (lambda t: t.median(0).values) if how == "median" else (lambda t: t.mean(0))
    with torch.no_grad():
        j = reduce(jacobians)
        b = reduce(fn(xs) - xs @ j.T)
    return j, b


def rowwise_jacobians(fn: Callable[[torch.Tensor], torch.Tensor], xs: torch.Tensor) -> torch.Tensor:
    """``[n, d_out, d_in]``: the Jacobian of ``fn`` at every row of ``xs``.

    ``fn`` acts on each row on its own (an MLP after a LayerNorm does), so the gradient
    of an output coordinate summed over rows holds every row's Jacobian row at once:
    ``d_out`` backward passes instead of ``n * d_out``.
    """
    with torch.enable_grad():
        x = xs.detach().clone().requires_grad_(True)
        y = fn(x)
        rows = [torch.autograd.grad(y[:, i].sum(), x, retain_graph=i + 1 < y.shape[1])[0] for i in range(y.shape[1])]
    return torch.stack(rows, dim=1).detach()


def mlp_function(model: object, layer: int) -> Callable[[torch.Tensor], torch.Tensor]:
    block = model.blocks[layer]  # type: ignore[attr-defined]

    def fn(x: torch.Tensor) -> torch.Tensor:
        return block.mlp(block.ln2(x))

    return fn
