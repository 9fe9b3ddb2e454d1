"""Path patching: what a receiver computes when only one sender's change reaches it.

Everything between sender and receiver keeps its clean value, so the receiver's
input is the clean residual stream plus the change in the sender's output
(``(z_alt - z) @ W_O`` for a head). The receiver is then recomputed exactly from
that input, norms included: a head's query, key or value input, an MLP's output,
or the final residual stream (the direct path to the logits).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import torch

from circuitcheck.plan.interventions import HookEdit, PathSpec

_QKV = re.compile(r"^blocks\.(\d+)\.attn\.hook_([qkv])$")
_MLP = re.compile(r"^blocks\.(\d+)\.hook_mlp_out$")
_RESID_POST = re.compile(r"^blocks\.(\d+)\.hook_resid_post$")


def sender_delta(
    model: Any, path: PathSpec, cache: dict[str, torch.Tensor], alternative: torch.Tensor, at: torch.Tensor
) -> torch.Tensor:
    """The change ``[n, seq, d_model]`` in the residual stream when the sender head's ``z`` becomes
    ``alternative``."""
    layer = int(path.sender.hook.split(".")[1])
    head = path.sender.head
    assert head is not None, "senders are heads"
    z = cache[path.sender.hook][:, :, head]
    delta = (alternative[:, :, head] - z) @ model.W_O[layer, head]
    return delta * at[..., None]


def receiver_function(model: Any, edit: HookEdit) -> Callable[[torch.Tensor], torch.Tensor]:
    """The map from the receiver's residual-stream input to the activation at ``edit.site``."""
    hook = edit.site.hook
    qkv = _QKV.match(hook)
    if qkv:
        layer, which = int(qkv.group(1)), qkv.group(2).upper()
        block = model.blocks[layer]
        w, b = getattr(model, f"W_{which}")[layer], getattr(model, f"b_{which}")[layer]
        return lambda x: torch.einsum("bsd,hde->bshe", block.ln1(x), w) + b
    mlp = _MLP.match(hook)
    if mlp:
        block = model.blocks[int(mlp.group(1))]
        return lambda x: block.mlp(block.ln2(x))
    if _RESID_POST.match(hook):
        return lambda x: x
    raise ValueError(f"no path-patching receiver at hook {hook!r}")


def path_values(model: Any, edit: HookEdit, cache: dict[str, torch.Tensor], delta: torch.Tensor) -> torch.Tensor:
    """The receiver's activation, for every sequence, when only the sender's change ``delta``
    reaches it."""
    assert edit.path is not None, "path edits carry a PathSpec"
    return receiver_function(model, edit)(cache[edit.path.resid] + delta).detach()
