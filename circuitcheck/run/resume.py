"""Where a stacked pass starts, and how it runs from there on cached clean activations.

An edit at layer k cannot change layers below k, so a pass whose edits all sit at
layer >= k starts from the clean run's residual stream entering block k. In the last
block, an edit after attention has mixed positions (at ``hook_z`` or later) does not
need that block's attention either: the pass starts *inside* the block from the
cached ``hook_z``. From there every position is computed on its own, so such a pass
can compute only the positions its edits touch; every other position keeps the clean
logits exactly.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from circuitcheck.plan.interventions import CLEAN, Variant

FULL = -1
"""Start layer meaning "run the whole model from the tokens"."""

CACHED = -2
"""Start layer meaning "no pass": an unedited variant on an input whose unedited run is cached."""

_BLOCK_HOOK = re.compile(r"^blocks\.(\d+)\.(.+)$")
_AFTER_MIXING = re.compile(r"^(attn\.hook_z|attn\.o\..+|hook_attn_out|attn\.hook_out|hook_resid_mid|hook_mlp_in|ln2\..+|mlp\..+|hook_mlp_out|hook_resid_post|hook_out)$")
"""Block hooks computed from ``hook_z`` onwards, position by position (the pre-LN native block)."""


@dataclass(frozen=True, order=True)
class StartPoint:
    layer: int
    """The first block the pass computes (``FULL``: from the tokens; ``n_layers``: only the final norm and
    unembedding; ``CACHED``: no pass, the input's cached unedited logits)."""
    inside: bool = False
    """Start the last block at its cached ``hook_z`` instead of its residual stream input;
    from there each position's logits depend only on that position's activations."""
    input: str = CLEAN
    """The input whose unedited run the pass resumes from (any, for ``FULL``)."""


def resume_hook(model: Any, layer: int) -> str:
    """The cached residual stream a pass starting at ``layer`` reads (``n_layers``: the final one)."""
    n = int(model.cfg.n_layers)
    return f"blocks.{layer}.hook_resid_pre" if layer < n else f"blocks.{n - 1}.hook_resid_post"


def z_hook(layer: int) -> str:
    return f"blocks.{layer}.attn.hook_z"


def resume_hooks(model: Any) -> set[str]:
    """Every activation a resumed pass may start from (for the clean run to capture)."""
    n = int(model.cfg.n_layers)
    hooks = {resume_hook(model, layer) for layer in range(n + 1)}
    if starts_inside_blocks(model):
        hooks.add(z_hook(n - 1))
    return hooks


def starts_inside_blocks(model: Any) -> bool:
    """Whether the last block is TL's native pre-LN block, whose computation after ``hook_z`` this module mirrors."""
    blocks = list(getattr(model, "blocks", []))
    if not blocks:
        return False
    native = getattr(blocks[-1], "original_component", None)
    attn = getattr(native, "attn", None)
    return type(native).__name__ == "NativeBlock" and type(getattr(attn, "original_component", None)).__name__ == "NativeAttention"


def _layer_of(model: Any, hook: str) -> tuple[int, bool]:
    """(layer, whether the hook sits after that block's attention mixing)."""
    match = _BLOCK_HOOK.match(hook)
    if match:
        return int(match.group(1)), bool(_AFTER_MIXING.match(match.group(2)))
    if hook.startswith(("ln_final", "unembed", "hook_unembed")):
        return int(model.cfg.n_layers), False
    return FULL, False


def start_point(model: Any, variant: Variant, cache: Mapping[str, Any], inside_ok: bool | None = None) -> StartPoint:
    """The latest point a variant's pass can start from, given what the cache of the variant's
    input holds (or would hold) (``inside_ok``: ``starts_inside_blocks(model)``, when the caller has it)."""
    if not variant.edits:
        return StartPoint(FULL)  # an un-edited variant runs in full: it is the stacking self-check
    hooks = [e.site.hook for e in variant.edits] + [e.reads for e in variant.edits if e.reads]
    places = [_layer_of(model, h) for h in hooks]
    layer = min(p[0] for p in places)
    last = int(model.cfg.n_layers) - 1
    inside = all(p == (last, True) for p in places)
    if inside_ok is None:
        inside_ok = starts_inside_blocks(model)
    if inside and inside_ok and {z_hook(last), resume_hook(model, last), resume_hook(model, last + 1)} <= cache.keys():
        return StartPoint(last, inside=True, input=variant.input)
    if layer <= 0 or resume_hook(model, layer) not in cache:
        return StartPoint(FULL)
    return StartPoint(layer, input=variant.input)


def forward_from(model: Any, layer: int, resid: torch.Tensor) -> torch.Tensor:
    """The logits, running blocks ``layer..`` on a residual stream, then the final norm and unembedding."""
    x = resid
    for block in list(model.blocks)[layer:]:
        out = block(x)
        x = out[0] if isinstance(out, tuple) else out
    return model.unembed(model.ln_final(x))


def forward_inside_last_block(model: Any, resid_pre: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """The logits from the last block's input and its ``hook_z`` ``[b, s, head, d_head]``.

    The same modules as ``NativeBlock.forward`` after attention, in the same order, so every
    hook from ``hook_z`` on fires as in a full pass: the output projection (``hook_z`` is its
    input hook), the attention output hook, the residual sums, ``ln2``, the MLP and the
    block's output hook.
    """
    block = list(model.blocks)[-1]
    native = block.original_component
    attn = native.attn
    attn_out = attn.hook_out(attn.original_component.o(z.flatten(-2)))
    x = resid_pre + attn_out
    if not native.cfg.attn_only:
        x = x + native.mlp(native.ln2(x))
    return model.unembed(model.ln_final(block.hook_out(x)))


def clean_logits_from_cache(model: Any, cache: dict[str, torch.Tensor]) -> torch.Tensor:
    """The clean logits recomputed from the cached final residual stream."""
    return forward_from(model, int(model.cfg.n_layers), cache[resume_hook(model, int(model.cfg.n_layers))])


def edited_positions(variant: Variant, touched: dict[str, torch.Tensor]) -> torch.Tensor:
    """The positions any of the variant's edits touches (sorted indices); ``touched[name]``:
    ``[seq]``, whether position mask ``name`` selects the position in any sequence."""
    union = torch.zeros_like(next(iter(touched.values())))
    for edit in variant.edits:
        union |= touched[edit.positions]
    return union.nonzero().flatten()
