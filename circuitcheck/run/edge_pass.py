"""One stacked pass of the edge engine: which receiver inputs change, and the hooks that change them.

In a pass, the residual stream flows as the model computes it (replacing a receiver's input never
reaches the stream: :mod:`circuitcheck.run.edge_layout`), so at a reading point it is the point's
*natural* input, the sum of every upstream sender's output in this pass and the biases. A receiver's
input in variant ``v`` is then either

    natural - sum over the cut edges s -> r of D_v[s]       ("cut" form), or
    base    + sum over the kept edges s -> r of D_v[s]      ("kept" form),

with ``D_v[s] = output_v[s] - ablated[s]`` and ``base`` the receiver's biases plus every upstream
sender's ablated output. Both are the same number; each (variant, point) takes the form with fewer
terms, so a variant that cuts one edge costs one term at one receiver, and receivers with nothing cut
keep their natural input untouched. The full circuit (nothing cut) takes the kept form at every
receiver: it is the self-check that the model's stream is what the kept form assumes.

A pass holds variants that change nothing before one reading point (one pass per layer: a layer's head
and MLP variants share it): every sender computed before that point has its clean output in them, so its
``D`` is the clean one, computed once (:attr:`EdgeValues.delta`), and the pass can start from the clean
run's cached residual stream at that point's layer. Only the senders after it that a changed input reads
are recorded in the pass, and only for the variants whose inputs read them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from circuitcheck.run.edge_layout import EdgeLayout, ReadingPoint, sender_hook
from circuitcheck.spec.components import Head

__all__ = ["EdgeValues", "PassPlan", "edge_hooks", "plan_pass"]


@dataclass(frozen=True)
class EdgeValues:
    """What every pass reads, from the clean run (and a corrupted one), computed once."""

    ablated: torch.Tensor
    """``[S, n, seq, d]`` each sender's ablated output."""
    delta: torch.Tensor
    """``[S, n, seq, d]`` each sender's clean output minus its ablated one."""
    base: list[torch.Tensor]
    """Per reading point, ``[n, seq, d]``: its biases plus every upstream sender's ablated output."""
    resid: dict[int, torch.Tensor]
    """Per layer a pass may start at, the clean residual stream entering it (``n_layers``: the final one)."""
    weights: dict[str, torch.Tensor]
    """``W_Q``, ``b_Q``, ``W_K``, ``b_K``, ``W_V``, ``b_V``, ``W_O`` read once: the bridge rebuilds them per access."""


@dataclass(frozen=True)
class _Changes:
    """The (variant, receiver) pairs whose input changes at one hook, and the terms of each."""

    point: int
    variant: torch.Tensor
    """``[P]`` the pair's variant (block of the pass)."""
    slot: torch.Tensor
    """``[P]`` the pair's head (q / k / v hooks); 0 elsewhere."""
    kept_form: torch.Tensor
    """``[P]`` bool: base + kept terms; otherwise natural - cut terms."""
    clean_senders: list[int]
    clean_weights: torch.Tensor
    """``[P, len(clean_senders)]`` +1 (kept) / -1 (cut) / 0 for senders whose ``D`` is the clean one."""
    live: list[_LiveTerm]
    """The terms of senders recorded in the pass, one per sender."""


@dataclass(frozen=True)
class _LiveTerm:
    """A recorded sender's term in some pairs' inputs: ``input[rows] += weight * D[at]``, where ``D`` holds the
    sender's ``D`` for only the variants some input reads it in (:attr:`PassPlan.live`)."""

    sender: int
    rows: torch.Tensor
    weight: torch.Tensor
    at: torch.Tensor


@dataclass(frozen=True)
class PassPlan:
    """One pass's changes, worked out once and reused by every chunk of sequences."""

    n_variants: int
    changes: dict[str, _Changes]
    """Per replaced hook."""
    live: dict[str, list[tuple[int, torch.Tensor]]]
    """Per sender hook, the senders to record there, each with the variants (ascending) whose inputs read it."""
    streams: set[str]
    """Head reading points' stream hooks to keep (their receivers' hooks see q / k / v, not the stream)."""


def plan_pass(layout: EdgeLayout, keep: torch.Tensor, first: int) -> PassPlan:
    """The changes of ``len(keep)`` variants that change nothing before ``layout.points[first]`` (a variant
    that cuts nothing: every point, in the kept form)."""
    cut = layout.full[None] - keep
    full_form = ~cut.flatten(1).any(1)
    clean_before = layout.points[first].order
    changes: dict[str, tuple[_Changes, list[tuple[int, torch.Tensor, torch.Tensor]]]] = {}
    for p, point in enumerate(layout.points[first:], start=first):
        up = list(point.upstream)
        kept_here, cut_here = keep[:, up][:, :, list(point.columns)], cut[:, up][:, :, list(point.columns)]
        kept_form = full_form | (kept_here.sum((1, 2)) < cut_here.sum((1, 2)))
        weights = torch.where(kept_form[:, None, None], kept_here, -cut_here)  # [V, U, C]
        changed = kept_form[:, None] | (cut_here != 0).any(1)  # [V, C]
        for hook, cols in _hooks_of(point, layout.shape.n_heads):
            variant, slot = changed[:, cols].nonzero(as_tuple=True)
            if not len(variant):
                continue
            w = weights[variant, :, torch.tensor(cols)[slot]]  # [P, U]
            used = (w != 0).any(0)
            clean = [j for j, s in enumerate(up) if used[j] and layout.sender_order[s] < clean_before]
            live = [j for j, s in enumerate(up) if used[j] and layout.sender_order[s] >= clean_before]
            terms = [(up[j], rows, w[rows, j]) for j in live for rows in [w[:, j].nonzero().flatten()]]
            changes[hook] = (_Changes(p, variant, slot, kept_form[variant], [up[j] for j in clean], w[:, clean], []),
                             terms)
    return _finish(layout, len(keep), changes)


def _hooks_of(point: ReadingPoint, n_heads: int) -> list[tuple[str, list[int]]]:
    """(hook, the point's column positions it replaces, in slot order)."""
    if point.kind != "heads":
        return [(point.stream_hook, [0])]
    return [(f"blocks.{point.layer}.attn.hook_{x}", list(range(i * n_heads, (i + 1) * n_heads)))
            for i, x in enumerate("qkv")]


def _finish(layout: EdgeLayout, n_variants: int,
            raw: dict[str, tuple[_Changes, list[tuple[int, torch.Tensor, torch.Tensor]]]]) -> PassPlan:
    """The plan, once every input's live terms are known: each recorded sender is recorded for only the
    variants whose inputs read it."""
    readers: dict[int, list[torch.Tensor]] = {}
    for change, terms in raw.values():
        for sender, rows, _ in terms:
            readers.setdefault(sender, []).append(change.variant[rows])
    need = {sender: torch.unique(torch.cat(parts)) for sender, parts in readers.items()}
    changes: dict[str, _Changes] = {}
    for hook, (change, terms) in raw.items():
        live = [_LiveTerm(sender, rows, weight, torch.searchsorted(need[sender], change.variant[rows]))
                for sender, rows, weight in terms]
        changes[hook] = _Changes(change.point, change.variant, change.slot, change.kept_form, change.clean_senders,
                                 change.clean_weights, live)
    live_at: dict[str, list[tuple[int, torch.Tensor]]] = {}
    for sender in sorted(need):
        live_at.setdefault(sender_hook(layout.senders[sender]), []).append((sender, need[sender]))
    streams = {layout.points[c.point].stream_hook for c in changes.values() if layout.points[c.point].kind == "heads"}
    return PassPlan(n_variants, changes, live_at, streams)


def edge_hooks(
    model: Any, layout: EdgeLayout, plan: PassPlan, values: EdgeValues, seqs: torch.Tensor
) -> dict[str, Callable[[torch.Tensor], Any]]:
    """The hook functions of one call of the pass over the sequences ``seqs``."""
    n_var, c = plan.n_variants, len(seqs)
    recorded: dict[int, torch.Tensor] = {}  # sender -> D [variants reading it, c, seq, d]
    streams: dict[str, torch.Tensor] = {}
    ablated = values.ablated[:, seqs]
    hooks: dict[str, Callable[[torch.Tensor], Any]] = {}

    def record(senders: list[tuple[int, torch.Tensor]]) -> Callable[[torch.Tensor], None]:
        def save(act: torch.Tensor) -> None:
            blocks = act.view(n_var, c, *act.shape[1:])
            for s, variants in senders:
                sender = layout.senders[s]
                if isinstance(sender, Head):
                    out = blocks[variants, :, :, sender.head] @ values.weights["W_O"][sender.layer, sender.head]
                else:
                    out = blocks[variants]
                recorded[s] = out - ablated[s]

        return save

    def keep_stream(name: str) -> Callable[[torch.Tensor], None]:
        def save(act: torch.Tensor) -> None:
            streams[name] = act

        return save

    def inputs(change: _Changes, natural: torch.Tensor) -> torch.Tensor:
        """``[P, c, seq, d]``: each pair's receiver input, from the pass's ``natural`` ``[V * c, seq, d]``."""
        own = natural.view(n_var, c, *natural.shape[-2:])[change.variant]
        if bool(change.kept_form.any()):
            base = values.base[change.point][seqs]
            own = torch.where(change.kept_form[:, None, None, None], base, own)
        if change.clean_senders:
            delta = values.delta[change.clean_senders][:, seqs]  # [U, c, seq, d]
            own = own + (change.clean_weights @ delta.flatten(1)).view(own.shape)
        for term in change.live:
            own = own.index_add(0, term.rows, term.weight[:, None, None, None] * recorded[term.sender][term.at])
        return own

    def replace_stream(change: _Changes) -> Callable[[torch.Tensor], torch.Tensor]:
        def replace(act: torch.Tensor) -> torch.Tensor:
            out = act.clone()
            out.view(n_var, c, *act.shape[-2:])[change.variant] = inputs(change, act)
            return out

        return replace

    def replace_heads(change: _Changes, which: str) -> Callable[[torch.Tensor], torch.Tensor]:
        point = layout.points[change.point]
        block = model.blocks[point.layer]
        w = values.weights[f"W_{which.upper()}"][point.layer][change.slot]  # [P, d, e]
        b = values.weights[f"b_{which.upper()}"][point.layer][change.slot]  # [P, e]

        def replace(act: torch.Tensor) -> torch.Tensor:
            x = inputs(change, streams[point.stream_hook])  # [P, c, seq, d]
            normed = block.ln1(x.flatten(0, 1)).view(len(x), -1, x.shape[-1])
            new = torch.bmm(normed, w) + b[:, None]
            out = act.clone()
            out.view(n_var, c, *act.shape[1:])[change.variant, :, :, change.slot] = new.view(*x.shape[:3], -1)
            return out

        return replace

    for hook, senders in plan.live.items():
        hooks[hook] = record(senders)
    for hook in plan.streams:
        hooks[hook] = keep_stream(hook)
    for hook, change in plan.changes.items():
        is_heads = layout.points[change.point].kind == "heads"
        hooks[hook] = replace_heads(change, hook[-1]) if is_heads else replace_stream(change)  # hook_q -> "q"
    return hooks
