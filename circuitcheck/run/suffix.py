"""A resumed pass that recomputes only the positions its edits can reach, and unembeds only the ones read.

Attention is causal, so an edit at position ``p`` cannot change any position before ``p``, in any layer. A
pass whose edits all sit at positions ``>= first`` (in every sequence) therefore runs its blocks on the
positions ``first..`` only: their queries attend over the input's unedited keys and values at the earlier
positions, recomputed once per chunk from the cached residual stream entering each block (the same for every
variant of the pass), and over the pass's own keys and values from ``first`` on. Two more savings:

- the final norm and unembedding run only at the positions the sink reads (``keep``); and
- the last block's queries, output projection and MLP run only at ``keep`` (its keys and values still at every
  position from ``first``, since the kept positions attend to them).

Cost per pass, against a full forward pass: ``(seq - first) / seq`` of every block after the start, and
``len(keep) / seq`` of the unembedding, which on GPT-2 small is 5.45 blocks' worth per position.

The computation mirrors a sequential pre-LN block with causal softmax attention and no rotary embedding
(TransformerLens's native block, Hugging Face's GPT-2 block), calling the bridge's own components (``ln1``,
the attention's ``q``/``k``/``v``/``o``, ``ln2``, ``mlp``) and firing the edit hooks of :data:`POINTS` where the
block's own hooks would fire; other models, and variants with edits elsewhere, take the whole-sequence path.
Hook functions see whole-sequence activations (the positions not computed are zero, and no edit touches
them: they are before ``first``, or in the last block outside ``keep`` where they cannot reach an output).
:func:`check_suffix_start` checks the mirror against the input's own logits once per input.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from circuitcheck.errors import SelfCheckError
from circuitcheck.plan.interventions import Variant

POINTS: dict[str, str] = {
    "hook_resid_pre": "resid_pre",
    "hook_in": "resid_pre",
    "attn.hook_z": "z",
    "attn.o.hook_in": "z",
    "hook_attn_out": "attn_out",
    "attn.hook_out": "attn_out",
    "hook_mlp_out": "mlp_out",
    "mlp.hook_out": "mlp_out",
    "hook_resid_post": "resid_post",
    "hook_out": "resid_post",
}
"""The block hooks a suffix pass fires, by the point of the block where each fires (aliases share a point).
Not ``hook_resid_mid``: on the bridges it is the second norm's input hook, so an edit there reaches the MLP's
input but not the residual stream; such variants take the whole-sequence path."""

_BLOCK_HOOK = re.compile(r"^blocks\.(\d+)\.(.+)$")

Hook = Callable[[torch.Tensor], torch.Tensor | None]


@dataclass(frozen=True)
class _Parts:
    """One block's modules, as a suffix pass calls them (the bridge's components, hooks and all)."""

    ln1: Any
    q: Any
    k: Any
    v: Any
    o: Any
    ln2: Any | None
    mlp: Any | None
    scale: float
    n_heads: int
    n_kv_heads: int
    d_head: int


def _parts(model: Any, block: Any) -> _Parts | None:
    """``block``'s parts when it is a sequential pre-LN block with plain causal softmax attention of a kind this
    module mirrors (TL's native block, Hugging Face's GPT-2 block), else None."""
    original = getattr(block, "original_component", None)
    attn = getattr(block, "attn", None)
    core = getattr(attn, "original_component", None)
    kind = (type(original).__name__, type(core).__name__)
    cfg = model.cfg
    d_head, n_heads = int(cfg.d_head), int(cfg.n_heads)
    if kind == ("NativeBlock", "NativeAttention") and core is not None:
        if core.rotary is not None or core.attn_scores_soft_cap > 0 or not core.causal:
            return None
        scale, n_kv = float(core.scale), int(core.n_kv_heads)
    elif kind == ("GPT2Block", "GPT2Attention") and core is not None:
        if getattr(core, "scale_attn_by_inverse_layer_idx", False) or getattr(core, "reorder_and_upcast_attn", False):
            return None
        scale, n_kv = math.sqrt(d_head), n_heads
    else:
        return None
    if attn is None or any(getattr(attn, name, None) is None for name in ("q", "k", "v", "o")):
        return None
    if not hasattr(block, "ln1"):
        return None
    attn_only = bool(getattr(cfg, "attn_only", False))
    return _Parts(block.ln1, attn.q, attn.k, attn.v, attn.o, None if attn_only else block.ln2,
                  None if attn_only else block.mlp, scale, n_heads, n_kv, d_head)


def block_parts(model: Any) -> list[_Parts] | None:
    """Every block's parts, or None when some block is not of a kind a suffix pass mirrors."""
    parts = [_parts(model, block) for block in getattr(model, "blocks", [])]
    if not parts or any(p is None for p in parts):
        return None
    return [p for p in parts if p is not None]


def suffix_capable(model: Any) -> bool:
    """Whether every block is of a kind :func:`forward_suffix` mirrors."""
    return block_parts(model) is not None


def point_of(hook: str) -> tuple[int, str] | None:
    """(layer, point) of a block hook a suffix pass fires, or None."""
    match = _BLOCK_HOOK.match(hook)
    if not match or match.group(2) not in POINTS:
        return None
    return int(match.group(1)), POINTS[match.group(2)]


def variant_fits(variant: Variant) -> bool:
    """Whether a suffix pass can apply every edit of ``variant``: plain edits (no reads of the pass's own
    activations, no paths) at hooks of :data:`POINTS`, at most one hook name per point."""
    names: dict[tuple[int, str], str] = {}
    for edit in variant.edits:
        where = point_of(edit.site.hook)
        if where is None or edit.reads or edit.path is not None:
            return False
        if names.setdefault(where, edit.site.hook) != edit.site.hook:
            return False
    return bool(variant.edits)


class _Firing:
    """Calls the pass's hook functions at their points, on whole-sequence activations, counting calls."""

    def __init__(self, hooks: dict[str, Hook], seq: int) -> None:
        self.seq = seq
        self.calls: dict[str, int] = {name: 0 for name in hooks}
        self.at: dict[tuple[int, str], list[tuple[str, Hook]]] = {}
        for name, fn in hooks.items():
            where = point_of(name)
            if where is None:
                raise ValueError(f"a suffix pass cannot fire hook {name!r}")
            self.at.setdefault(where, []).append((name, fn))

    def __call__(self, layer: int, point: str, x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        fns = self.at.get((layer, point))
        if not fns:
            return x
        full = x.new_zeros((x.shape[0], self.seq, *x.shape[2:]))
        full[:, positions] = x
        for name, fn in fns:
            self.calls[name] += 1
            out = fn(full)
            full = full if out is None else out
        return full[:, positions]


def _heads(linear: Any, x: torch.Tensor, n_heads: int, d_head: int, repeats: int) -> torch.Tensor:
    """``[rows, pos, d_model] -> [rows, head, pos, d_head]``, key/value heads repeated for grouped-query attention."""
    out = linear(x).view(x.shape[0], x.shape[1], n_heads, d_head).transpose(1, 2)
    return out.repeat_interleave(repeats, dim=1) if repeats > 1 else out


def _attend(
    parts: _Parts, h: torch.Tensor, h_prefix: torch.Tensor, queries: torch.Tensor, first: int, n_blocks: int
) -> torch.Tensor:
    """``hook_z`` ``[rows, len(queries), head, d_head]`` at the absolute positions ``queries`` (all ``>= first``).

    ``h``: ``ln1``'s output at positions ``first..`` ``[rows, s, d]``, rows block-major (``n_blocks`` x ``c``);
    ``h_prefix``: at positions ``..first`` of the input's unedited run ``[c, first, d]``, shared by the blocks."""
    n_heads, d_head, kv = parts.n_heads, parts.d_head, parts.n_kv_heads
    rep = n_heads // kv
    rows, s = h.shape[0], h.shape[1]
    q = _heads(parts.q, h[:, queries - first], n_heads, d_head, 1)
    k = _heads(parts.k, h, kv, d_head, rep)
    v = _heads(parts.v, h, kv, d_head, rep)
    scores = torch.matmul(q, k.transpose(-2, -1)) / parts.scale
    keys = torch.arange(first, first + s, device=h.device)
    scores = scores.masked_fill(keys[None, :] > queries[:, None], float("-inf"))
    if first == 0:
        return torch.matmul(torch.softmax(scores, dim=-1), v).transpose(1, 2)
    c = h_prefix.shape[0]
    k_pre = _heads(parts.k, h_prefix, kv, d_head, rep)  # [c, head, first, d_head]
    v_pre = _heads(parts.v, h_prefix, kv, d_head, rep)
    n_q = len(queries)
    q_blocks = q.view(n_blocks, c, n_heads, n_q, d_head)
    pre_scores = (torch.matmul(q_blocks, k_pre.transpose(-2, -1)) / parts.scale).view(rows, n_heads, n_q, first)
    pattern = torch.softmax(torch.cat([pre_scores, scores], dim=-1), dim=-1)
    from_prefix = torch.matmul(pattern[..., :first].reshape(n_blocks, c, n_heads, n_q, first), v_pre)
    z = from_prefix.view(rows, n_heads, n_q, d_head) + torch.matmul(pattern[..., first:], v)
    return z.transpose(1, 2)


def forward_suffix(
    model: Any,
    layer: int,
    first: int,
    resid: torch.Tensor,
    prefix: list[torch.Tensor],
    keep: torch.Tensor,
    n_blocks: int,
    hooks: dict[str, Hook],
) -> tuple[torch.Tensor, dict[str, int]]:
    """The logits ``[rows, len(keep), vocab]`` at positions ``keep`` (sorted, all ``>= first``), running blocks
    ``layer..`` on positions ``first..`` of ``resid`` ``[rows, seq, d]`` (the residual stream entering block
    ``layer``, rows block-major); ``prefix[i]``: the input's unedited stream entering block ``layer + i`` at
    positions ``..first`` ``[c, first, d]``. Returns the logits and each hook's call count."""
    seq = resid.shape[1]
    fire = _Firing(hooks, seq)
    blocks = block_parts(model)
    if blocks is None:
        raise ValueError("forward_suffix: the model has blocks a suffix pass does not mirror (see suffix_capable)")
    positions = torch.arange(first, seq, device=resid.device)
    x = resid[:, first:]
    for i, parts in enumerate(blocks[layer:]):
        at = layer + i
        last = at == len(blocks) - 1
        x = fire(at, "resid_pre", x, positions)
        queries = keep if last else positions
        z = _attend(parts, parts.ln1(x), parts.ln1(prefix[i]) if first else x[:0], queries, first, n_blocks)
        z = fire(at, "z", z, queries)
        attn_out = fire(at, "attn_out", parts.o(z.flatten(-2)), queries)
        if last:
            x = x[:, queries - first]
        x = x + attn_out
        if parts.mlp is not None and parts.ln2 is not None:
            x = x + fire(at, "mlp_out", parts.mlp(parts.ln2(x)), queries)
        x = fire(at, "resid_post", x, queries)
    if layer == len(blocks):
        x = x[:, keep - first]
    return model.unembed(model.ln_final(x)), fire.calls


def check_suffix_start(
    model: Any, acts: dict[str, torch.Tensor], want: torch.Tensor, resume_hook: Callable[[int], str], name: str,
    tol: float,
) -> None:
    """With no edits, a suffix pass must give the input's logits back: checked on the first sequences
    (``want``: the input's logits there) from the lowest cached layer, at the second half of the positions."""
    n, seq = len(want), int(want.shape[1])
    layers = [layer for layer in range(int(model.cfg.n_layers)) if resume_hook(layer) in acts]
    if not layers or seq < 2:
        return
    layer, first = layers[0], seq // 2
    keep = torch.arange(first, seq)
    prefix = [acts[resume_hook(at)][:n, :first] for at in range(layer, int(model.cfg.n_layers))]
    with torch.no_grad():
        got, _ = forward_suffix(model, layer, first, acts[resume_hook(layer)][:n], prefix, keep, 1, {})
    got, want = got.detach().to("cpu", torch.float32), want[:, first:].to(torch.float32)
    if not torch.allclose(got, want, atol=tol, rtol=tol):
        raise SelfCheckError(
            f"recomputing positions {first}.. from block {layer} does not reproduce the logits of input '{name}' "
            f"(max difference {float((got - want).abs().max()):.2e}); this model's block differs from "
            "TransformerLens's native block: run with --no-resume"
        )
