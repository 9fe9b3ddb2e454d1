"""Median-Jacobian linearisation of an MLP (seed 002's T6 rung).

f(x) ~ J x + b with J the elementwise median of the per-example Jacobians of
x -> MLP(LN2(x)) over the fitting examples, and b the elementwise median of
f(x_i) - J x_i: a linear map that is typical of the data rather than exact anywhere.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

MAX_FIT_EXAMPLES = 512


def median_jacobian(fn: Callable[[torch.Tensor], torch.Tensor], inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(J [d_out, d_in], b [d_out])`` fitted on the first ``MAX_FIT_EXAMPLES`` rows of ``inputs``."""
    xs = inputs[:MAX_FIT_EXAMPLES].detach().float()
    with torch.enable_grad():
        jacobians = torch.stack([torch.autograd.functional.jacobian(fn, x) for x in xs])
    with torch.no_grad():
        j = jacobians.median(0).values
        b = (fn(xs) - xs @ j.T).median(0).values
    return j, b


def mlp_function(model: object, layer: int) -> Callable[[torch.Tensor], torch.Tensor]:
    block = model.blocks[layer]  # type: ignore[attr-defined]

    def fn(x: torch.Tensor) -> torch.Tensor:
        return block.mlp(block.ln2(x))

    return fn
