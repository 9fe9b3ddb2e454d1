"""Where a stacked pass starts, and how it runs from there on an input's cached unedited run.

An edit at layer k cannot change layers below k, so a pass whose edits all sit at
layer >= k starts from the cached residual stream entering block k. In the last
block, an edit after attention has mixed positions (at ``hook_z`` or later) does not
need that block's attention either: the pass starts *inside* the block from the
cached ``hook_z``. From there every position is computed on its own, so such a pass
can compute only the positions its edits touch; every other position keeps the
unedited logits exactly.

The start points, in the order the engine runs them (:attr:`StartPoint.run_order`)::

    Start.CACHED             no pass: an unedited variant takes its input's cached logits
    Start.TOKENS             the whole model, from the tokens
    Start.LAYER, layer=k     blocks k.. from the cached blocks.k.hook_resid_pre
                             (k = n_layers: only the final norm and unembedding)
    Start.INSIDE_LAST_BLOCK  the last block after attention, from its cached hook_z
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

import torch

from circuitcheck.plan.interventions import CLEAN, Variant
from circuitcheck.run.suffix import suffix_capable, variant_fits

ATTENTION_SHARE_OF_BLOCK = 0.5
"""What a pass that starts inside the last block skips of it (the attention), as a share of one block.

The cost model's one guess: attention and the MLP counted as equal halves of a block (at these
models' sizes, the attention's projections and score matrices against the MLP's two wide
matrices). It only decides whether caching another input's unedited run pays
(:func:`inputs_worth_caching`); a wrong guess costs at most one pass, never a different result.
"""

CACHING_COST_PASSES = 1
"""Caching an input's unedited run costs one full pass over its sequences (``engine.clean_run``)."""

_BLOCK_HOOK = re.compile(r"^blocks\.(\d+)\.(.+)$")
_AFTER_MIXING = re.compile(
    r"^(attn\.hook_z|attn\.o\..+|hook_attn_out|attn\.hook_out|hook_resid_mid|hook_mlp_in|ln2\..+|mlp\..+"
    r"|hook_mlp_out|hook_resid_post|hook_out)$"
)
"""Block hooks computed from ``hook_z`` onwards, position by position (the pre-LN native block)."""


class Start(Enum):
    """What a variant's pass starts from (see the module docstring)."""

    CACHED = "cached"
    TOKENS = "tokens"
    LAYER = "layer"
    INSIDE_LAST_BLOCK = "inside_last_block"


@dataclass(frozen=True)
class StartPoint:
    kind: Start
    layer: int = 0
    """The block the pass starts at (``Start.LAYER``: at its input; ``Start.INSIDE_LAST_BLOCK``:
    at its ``hook_z``); unused for the other kinds."""
    input: str = CLEAN
    """The input whose cached unedited run the pass resumes from, or whose logits it takes
    (``CLEAN`` for ``Start.TOKENS``, where each variant reads its own input's tokens)."""
    first: int | None = None
    """``Start.LAYER`` only: recompute positions ``first..`` only (:mod:`circuitcheck.run.suffix`); None:
    every position."""

    @property
    def blocks_skipped(self) -> float:
        """How much of the forward pass this start skips, in blocks (the cost model's unit)."""
        if self.kind is Start.INSIDE_LAST_BLOCK:
            return self.layer + ATTENTION_SHARE_OF_BLOCK
        return float(self.layer) if self.kind is Start.LAYER else 0.0

    @property
    def run_order(self) -> tuple[int, float, str, int]:
        """Sort key of the engine's loop: cached logits first (no pass), then passes by how far into
        the model they start. Any fixed order gives the same logits; this one also fixes which
        self-check or error a run meets first."""
        return (0 if self.kind is Start.CACHED else 1, self.blocks_skipped, self.input,
                -1 if self.first is None else self.first)


FROM_TOKENS = StartPoint(Start.TOKENS)


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
    return (
        type(native).__name__ == "NativeBlock"
        and type(getattr(attn, "original_component", None)).__name__ == "NativeAttention"
    )


def _layer_of(model: Any, hook: str) -> tuple[int, bool]:
    """(layer, whether the hook sits after that block's attention mixing); the final norm and
    unembedding are layer ``n_layers``, the embeddings layer 0 (a pass that edits them starts from
    the tokens)."""
    match = _BLOCK_HOOK.match(hook)
    if match:
        return int(match.group(1)), bool(_AFTER_MIXING.match(match.group(2)))
    if hook.startswith(("ln_final", "unembed", "hook_unembed")):
        return int(model.cfg.n_layers), False
    return 0, False


def start_point(
    model: Any, variant: Variant, cache: Mapping[str, Any], inside_ok: bool | None = None, base_from_cache: bool = True,
    suffix_ok: bool = False,
) -> StartPoint:
    """The latest point a variant's pass can start from, given what the cache of the variant's
    input holds (or would hold) (``inside_ok``: ``starts_inside_blocks(model)``, when the caller has it).
    ``base_from_cache``: a pass inside the last block recomputes its input's unedited logits from the
    cached final residual stream (False when a sink already holds what it reads of them). ``suffix_ok``:
    the model runs suffix passes (:func:`circuitcheck.run.suffix.suffix_capable`): a variant they fit may start
    at block 0 from the cached embeddings, since it then computes only some positions."""
    if not variant.edits:
        return FROM_TOKENS  # an un-edited variant runs in full: it is the stacking self-check
    hooks = [e.site.hook for e in variant.edits] + [e.reads for e in variant.edits if e.reads]
    places = [_layer_of(model, h) for h in hooks]
    last = int(model.cfg.n_layers) - 1
    inside = all(p == (last, True) for p in places)
    if inside_ok is None:
        inside_ok = starts_inside_blocks(model)
    inside_needs = {z_hook(last), resume_hook(model, last)}
    if base_from_cache:
        inside_needs.add(resume_hook(model, last + 1))
    if inside and inside_ok and inside_needs <= cache.keys():
        return StartPoint(Start.INSIDE_LAST_BLOCK, last, input=variant.input)
    layer = min(p[0] for p in places)
    from_embeddings = suffix_ok and variant_fits(variant)
    if (layer == 0 and not from_embeddings) or resume_hook(model, layer) not in cache:
        return FROM_TOKENS
    return StartPoint(Start.LAYER, layer, input=variant.input)


def inputs_worth_caching(
    model: Any, variants: list[Variant], points: list[StartPoint], cached: Collection[str]
) -> list[str]:
    """The inputs, not yet ``cached``, whose unedited run is worth caching.

    Variants on another input than the clean one (a corrupted prompt) can resume only from that
    input's own unedited run. Caching it pays when the passes it saves add up to more than
    ``CACHING_COST_PASSES``: the share of the model each variant's start skips
    (``points[k]``, as if the input were cached), plus one whole pass for the input's unedited
    variant, which then takes the caching pass's logits.
    """
    n_layers = int(model.cfg.n_layers)
    saved: dict[str, float] = defaultdict(float)
    for variant, point in zip(variants, points, strict=True):
        if variant.input in cached:
            continue
        if not variant.edits:
            saved[variant.input] += 1.0
        elif point.kind is not Start.TOKENS:
            saved[variant.input] += point.blocks_skipped / n_layers
    return [name for name, passes in saved.items() if passes > CACHING_COST_PASSES]


def served_start(variant: Variant, point: StartPoint, cached: Collection[str]) -> StartPoint:
    """``point`` once the caches are made: from the tokens when the input is not cached; an unedited
    variant on a cached input other than the clean one takes the cached logits (the clean one stays
    a stacked pass: it is the batching self-check)."""
    if variant.input not in cached:
        return FROM_TOKENS
    if not variant.edits and variant.input != CLEAN:
        return StartPoint(Start.CACHED, input=variant.input)
    return point


def forward_from(model: Any, layer: int, resid: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
    """The logits, running blocks ``layer..`` on a residual stream, then the final norm and unembedding (at
    positions ``keep`` only, when given: both act position by position)."""
    x = resid
    for block in list(model.blocks)[layer:]:
        out = block(x)
        x = out[0] if isinstance(out, tuple) else out
    return model.unembed(model.ln_final(x if keep is None else x[:, keep]))


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


def per_position_blocks(act: torch.Tensor, block_positions: torch.Tensor) -> torch.Tensor:
    """``act [c, s, ...]`` rearranged into one block of ``c`` rows per entry of ``block_positions``,
    each row holding that one position: ``[len(block_positions) * c, 1, ...]``."""
    picked = act[:, block_positions].transpose(0, 1)
    return picked.reshape((len(block_positions) * act.shape[0], 1) + act.shape[2:])


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


def hooks_to_resume(model: Any, variants: list[Variant]) -> set[str]:
    """The cached activations the clean-input ``variants`` would start from, when a sink holds what passes
    read of the unedited logits (a subset of :func:`resume_hooks`: only the layers some variant resumes at)."""
    inside_ok, suffix_ok = starts_inside_blocks(model), suffix_capable(model)
    every = dict.fromkeys(resume_hooks(model))
    last = int(model.cfg.n_layers) - 1
    needed: set[str] = set()
    for variant in variants:
        point = start_point(model, variant, every, inside_ok, base_from_cache=False, suffix_ok=suffix_ok)
        if point.kind is Start.LAYER and suffix_ok and variant_fits(variant):
            needed |= {resume_hook(model, layer) for layer in range(point.layer, last + 1)}
        if point.kind is Start.LAYER:
            needed.add(resume_hook(model, point.layer))
        elif point.kind is Start.INSIDE_LAST_BLOCK:
            needed |= {z_hook(last), resume_hook(model, last)}
    return needed
