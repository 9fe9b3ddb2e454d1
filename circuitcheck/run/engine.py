"""Run every variant of a plan batched along the batch dimension.

One clean pass caches the activations that edits and scores read. Then all
other variants are stacked: rows ``[k * c, (k + 1) * c)`` of a chunk hold
variant ``k`` for the chunk's ``c`` sequences, and one hook per hook name
edits each variant's rows. Every hook counts its calls; one that never fires
is an error, because TransformerLens silently ignores hooks that match nothing.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch

from circuitcheck.errors import SelfCheckError
from circuitcheck.plan.interventions import CLEAN, HookEdit, Variant
from circuitcheck.run.edit_groups import build_groups, expand_to_blocks
from circuitcheck.run.edits import add_stashes, apply_edit, edit_values, grouped_editor
from circuitcheck.run.replacements import InputCache, Replacements, derangement
from circuitcheck.run.resume import (
    CACHED,
    FULL,
    StartPoint,
    edited_positions,
    forward_from,
    forward_inside_last_block,
    resume_hook,
    resume_hooks,
    start_point,
    starts_inside_blocks,
    z_hook,
)

__all__ = ["DEFAULT_MAX_ROWS", "EngineInputs", "Replacements", "clean_run", "derangement", "resume_hooks", "run_naive", "run_variants"]

DEFAULT_MAX_ROWS = 4096


@dataclass(frozen=True)
class EngineInputs:
    inputs: dict[str, torch.Tensor]
    masks: dict[str, torch.Tensor]


@contextmanager
def counted_hooks(model: Any, hooks: dict[str, Callable[..., Any]]) -> Iterator[dict[str, int]]:
    """Attach forward hooks for the block; yield per-hook call counts; always detach."""
    calls: dict[str, int] = defaultdict(int)

    def counting(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def hook(act: torch.Tensor, hook: Any = None) -> Any:
            calls[name] += 1
            return fn(act)

        return hook

    fwd = [(name, counting(name, fn)) for name, fn in hooks.items()]
    with model.hooks(fwd_hooks=fwd):
        yield calls


def assert_fired(calls: dict[str, int], expected: list[str], context: str) -> None:
    silent = [name for name in expected if calls.get(name, 0) == 0]
    if silent:
        raise SelfCheckError(
            f"{context}: hook(s) {silent} never fired, so their edits were not applied; "
            "the hook name does not reach this model's forward pass"
        )


def clean_run(model: Any, tokens: torch.Tensor, capture: set[str], max_rows: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Clean logits plus the listed activations, chunked over sequences."""
    logits_parts: list[torch.Tensor] = []
    parts: dict[str, list[torch.Tensor]] = {name: [] for name in capture}

    def saver(name: str) -> Callable[[torch.Tensor], None]:
        def save(act: torch.Tensor) -> None:
            parts[name].append(act.detach().clone())

        return save

    for start in range(0, len(tokens), max_rows):
        chunk = tokens[start : start + max_rows]
        with counted_hooks(model, {name: saver(name) for name in capture}) as calls:
            logits_parts.append(model(chunk).detach())
        assert_fired(calls, sorted(capture), "clean run")
    return torch.cat(logits_parts), {k: torch.cat(v) for k, v in parts.items()}


def run_variants(
    model: Any,
    variants: list[Variant],
    data: EngineInputs,
    repl: Replacements,
    max_rows: int = DEFAULT_MAX_ROWS,
    resume: bool = True,
) -> list[torch.Tensor]:
    """Logits ``[n_seqs, seq, vocab]`` for each variant, stacked into shared passes.

    With ``resume``, each pass starts as late as its variants' edits allow (see
    :mod:`circuitcheck.run.resume`): at the cached residual stream of the first edited
    layer, or inside the last block at its cached ``hook_z`` (where variants that edit at
    most half the positions compute only those: one stacked block of rows per edited position).
    """
    if not variants:
        return []
    for v in variants:
        for e in v.edits:
            repl.prepare(e)  # fits and precomputations now: run inside a hook they would fire hooks
    by_start: dict[StartPoint, list[int]] = defaultdict(list)
    for k, point in enumerate(_start_points(model, variants, data, repl, max_rows) if resume else [StartPoint(FULL)] * len(variants)):
        by_start[point].append(k)
    outputs: list[torch.Tensor] = [torch.empty(0)] * len(variants)
    for point, members in sorted(by_start.items()):
        if point.layer == CACHED:
            for k in members:
                outputs[k] = repl.inputs[point.input].logits(model).clone()
            continue
        if point.inside:
            check_inside_start(model, repl.inputs[point.input], point.input)
            sparse, members = _few_positions(variants, members, data.masks)
            for k, out in zip(sparse, _run_inside(model, [variants[k] for k in sparse], list(sparse.values()), data, repl, max_rows, point), strict=True):
                outputs[k] = out
        for first in range(0, len(members), max_rows):  # more variants than rows: several passes
            part = members[first : first + max_rows]
            for k, out in zip(part, _run_pass(model, [variants[k] for k in part], data, repl, max_rows, point).unbind(0), strict=True):
                outputs[k] = out
    return outputs


def _start_points(model: Any, variants: list[Variant], data: EngineInputs, repl: Replacements, max_rows: int) -> list[StartPoint]:
    """Each variant's start point. Variants on another input than the clean one (a corrupted
    prompt) resume from that input's unedited run, cached here once per input when the passes it
    saves (the layers its variants skip, plus the unedited variant's own pass) add up to more than
    the one pass that caching it costs; the unedited variant then takes the cached logits."""
    inside_ok = starts_inside_blocks(model)
    wanted = resume_hooks(model)
    could = dict.fromkeys(wanted)
    points = [start_point(model, v, repl.inputs[v.input].acts if v.input in repl.inputs else could, inside_ok) for v in variants]
    saved: dict[str, float] = defaultdict(float)
    for v, point in zip(variants, points, strict=True):
        if v.input in repl.inputs:
            continue
        if not v.edits:
            saved[v.input] += 1.0
        elif point.layer != FULL:
            saved[v.input] += (point.layer + 0.5 * point.inside) / int(model.cfg.n_layers)
    for name, passes in saved.items():
        if passes > 1:
            with torch.no_grad():
                logits, acts = clean_run(model, data.inputs[name], wanted, max_rows)
            repl.inputs[name] = InputCache(acts, known_logits=logits)
    return [_served(v, p, repl) for v, p in zip(variants, points, strict=True)]


def _served(variant: Variant, point: StartPoint, repl: Replacements) -> StartPoint:
    if variant.input not in repl.inputs:
        return StartPoint(FULL)
    if not variant.edits and variant.input != CLEAN:  # the clean one stays a stacked pass: the batching self-check
        return StartPoint(CACHED, input=variant.input)
    return point


def _few_positions(variants: list[Variant], members: list[int], masks: dict[str, torch.Tensor]) -> tuple[dict[int, torch.Tensor], list[int]]:
    """({variant: its edited positions} for variants whose edits touch at most half the positions,
    the rest): per-position blocks pay for gathering and scattering, so whole sequences are cheaper
    when most positions change."""
    touched = {name: mask.any(0) for name, mask in masks.items()}
    seq = len(next(iter(touched.values())))
    positions = {k: edited_positions(variants[k], touched) for k in members}
    few = {k: p for k, p in positions.items() if 2 * len(p) <= seq}
    return few, [k for k in members if k not in few]


def _run_inside(
    model: Any, variants: list[Variant], positions: list[torch.Tensor], data: EngineInputs, repl: Replacements, max_rows: int, point: StartPoint
) -> list[torch.Tensor]:
    """Variants that start inside the last block, per position: each of a variant's edited
    ``positions`` is a block of one-position rows; every other position keeps the input's unedited logits."""
    if not variants:
        return []
    block_variant = torch.repeat_interleave(torch.arange(len(variants)), torch.tensor([len(p) for p in positions], dtype=torch.long))
    cols = torch.cat(positions)
    base = repl.inputs[point.input].logits(model)
    out = base.expand((len(variants),) + base.shape).clone()
    for first in range(0, len(cols), max_rows):  # more blocks than rows: several passes
        owner, at = block_variant[first : first + max_rows], cols[first : first + max_rows]
        used, local = torch.unique(owner, return_inverse=True)
        logits = _run_pass(model, [variants[k] for k in used.tolist()], data, repl, max_rows, point, PassBlocks(local, at))
        out[owner, :, at] = logits[:, :, 0]
    return list(out.unbind(0))


def check_inside_start(model: Any, cache: InputCache, name: str = CLEAN, n: int = 4) -> None:
    """Starting inside the last block, with no edits, must give the input's logits back.

    The resumed computation mirrors TransformerLens's native block by hand, so it is
    checked against the unedited run's own logits once per input before any result uses it.
    """
    if cache.inside_checked:
        return
    last = int(model.cfg.n_layers) - 1
    with torch.no_grad():
        got = forward_inside_last_block(model, cache.acts[resume_hook(model, last)][:n], cache.acts[z_hook(last)][:n])
    want = cache.logits(model)[:n]
    if not torch.allclose(got, want, atol=1e-4, rtol=1e-4):
        raise SelfCheckError(
            f"starting inside block {last} at its cached hook_z does not reproduce the logits of input '{name}' "
            f"(max difference {float((got - want).abs().max()):.2e}); this model's block differs from "
            "TransformerLens's native block: run with --no-resume"
        )
    cache.inside_checked = True


@dataclass(frozen=True)
class PassBlocks:
    """The stacked blocks of a pass inside the last block: block ``b`` holds only position
    ``cols[b]`` of the pass's variant ``variants[b]`` (ascending)."""

    variants: torch.Tensor
    cols: torch.Tensor


def _run_pass(
    model: Any, variants: list[Variant], data: EngineInputs, repl: Replacements, max_rows: int, point: StartPoint, blocks: PassBlocks | None = None
) -> torch.Tensor:
    """Logits ``[n_blocks, n_seqs, ...]``: one stacked block of rows per variant, or per entry of ``blocks``."""
    n_seqs = len(data.inputs[CLEAN])
    n_blocks = len(variants) if blocks is None else len(blocks.variants)
    per_chunk = max(1, max_rows // n_blocks)
    by_hook: dict[str, list[tuple[int, HookEdit]]] = defaultdict(list)
    for k, variant in enumerate(variants):
        for edit in variant.edits:
            by_hook[edit.site.hook].append((k, edit))
    mask_names = sorted({e.positions for v in variants for e in v.edits})
    stack = torch.stack([data.masks[name] for name in mask_names]) if mask_names else torch.zeros(0)
    groups = {hook: build_groups(edits, mask_names) for hook, edits in by_hook.items()}
    if blocks is not None:
        groups = {hook: [expand_to_blocks(g, blocks.variants) for g in gs] for hook, gs in groups.items()}
    cols = None if blocks is None else blocks.cols
    reads = {e.reads for v in variants for e in v.edits if e.reads}
    parts: list[torch.Tensor] = []
    for start in range(0, n_seqs, per_chunk):
        rows = torch.arange(start, min(start + per_chunk, n_seqs))
        stash: dict[str, torch.Tensor] = {}
        hooks = {name: grouped_editor(g, stack, rows, n_blocks, repl, stash, cols) for name, g in groups.items()}
        add_stashes(hooks, reads, stash)
        with counted_hooks(model, hooks) as calls:
            logits = _forward(model, point, variants, data, rows, repl, cols).detach()
        assert_fired(calls, sorted(hooks), "intervention run")
        parts.append(logits.view((n_blocks, len(rows)) + logits.shape[1:]))
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)


def _forward(model: Any, point: StartPoint, variants: list[Variant], data: EngineInputs, rows: torch.Tensor, repl: Replacements, cols: torch.Tensor | None) -> torch.Tensor:
    """The stacked pass's logits, from the tokens or from the cache at ``point``."""
    if point.layer == FULL:
        return model(torch.cat([data.inputs[v.input][rows] for v in variants]))
    acts = repl.inputs[point.input].acts
    resid = acts[resume_hook(model, point.layer)][rows]
    if not point.inside:
        return forward_from(model, point.layer, resid.repeat(len(variants), *([1] * (resid.dim() - 1))))
    z = acts[z_hook(point.layer)][rows]
    if cols is None:
        return forward_inside_last_block(model, resid.repeat(len(variants), 1, 1), z.repeat(len(variants), 1, 1, 1))
    return forward_inside_last_block(model, per_position_blocks(resid, cols), per_position_blocks(z, cols))


def per_position_blocks(act: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """``act [c, s, ...]`` rearranged into one block of ``c`` rows per entry of ``cols``: ``[len(cols) * c, 1, ...]``."""
    picked = act[:, cols].transpose(0, 1)
    return picked.reshape((len(cols) * act.shape[0], 1) + act.shape[2:])


def run_naive(model: Any, variant: Variant, data: EngineInputs, repl: Replacements) -> torch.Tensor:
    """The reference: one un-stacked forward pass for one variant (used by tests)."""
    rows = torch.arange(len(data.inputs[CLEAN]))
    hooks: dict[str, Callable[[torch.Tensor], Any]] = {}
    stash: dict[str, torch.Tensor] = {}
    for e in variant.edits:
        repl.prepare(e)
    for name in {e.site.hook for e in variant.edits}:
        edits = [e for e in variant.edits if e.site.hook == name]

        def edit_one(act: torch.Tensor, edits: list[HookEdit] = edits) -> torch.Tensor:
            for e in edits:
                read = stash[e.reads] if e.reads else None
                act = apply_edit(act, e, edit_values(repl, e, rows, act, read), data.masks[e.positions])
            return act

        hooks[name] = edit_one
    add_stashes(hooks, {e.reads for e in variant.edits if e.reads}, stash)
    with counted_hooks(model, hooks) as calls:
        logits = model(data.inputs[variant.input]).detach()
    assert_fired(calls, sorted(hooks), "naive run")
    return logits
