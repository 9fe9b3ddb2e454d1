"""Run every variant of a plan in shared, stacked forward passes.

One clean pass (:func:`clean_run`) caches the activations that edits and scores read.
:func:`run_variants` then sorts the variants by where their pass can start
(:mod:`circuitcheck.run.resume`) and runs each start point's variants stacked along the
batch dimension: one block of rows per variant, and one hook per hook name that edits
every block at once (:mod:`circuitcheck.run.edits`). Every hook counts its calls; one
that never fires is an error, because TransformerLens silently ignores hooks that
match nothing.

The stacked layout, for ``n`` sequences and ``max_rows = R``::

    start points, in run order (StartPoint.run_order), each run on its own:
      CACHED: no pass | TOKENS | LAYER 1 .. n_layers, with INSIDE_LAST_BLOCK after LAYER n_layers - 1

    one start point's K variants -> passes of at most R variants each
    one pass of K blocks          -> chunks of c = max(1, R // K) sequences, one forward call each

    K = 3, n = 5, R = 6, so c = 2:   call 1: seqs 0-1   call 2: seqs 2-3   call 3: seq 4
        block 0 = variant 0          rows 0-1           rows 0-1           row 0
        block 1 = variant 1          rows 2-3           rows 2-3           row 1
        block 2 = variant 2          rows 4-5           rows 4-5           row 2

    a call's input: from the tokens, each block's rows are its own variant's input tokens for the
    chunk; resumed, the cached activations of the chunk, repeated once per block. Its logits
    [K * c, seq, vocab] are viewed as [K, c, seq, vocab]; the calls are concatenated along the
    sequences into [K, n, seq, vocab], one [n, seq, vocab] per variant.

Inside the last block (``Start.INSIDE_LAST_BLOCK``) every position is computed on its own, so a
variant that edits at most half the positions (``PER_POSITION_MAX_SHARE``) gets one block per
edited position, each row one position long (:class:`PassBlocks`); several variants' blocks share
a pass of at most R blocks, and the rest of each variant's logits are its input's unedited ones::

    variant 0 edits positions 2 and 5, variant 1 edits position 3:
        block 0 = variant 0 at position 2    rows [0, c)     each row [1, d_model]
        block 1 = variant 0 at position 5    rows [c, 2c)    block_variant  = [0, 0, 1]
        block 2 = variant 1 at position 3    rows [2c, 3c)   block_position = [2, 5, 3]
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import torch

from circuitcheck.errors import SelfCheckError
from circuitcheck.plan.interventions import CLEAN, HookEdit, Variant
from circuitcheck.run.edit_groups import EditGroup, build_groups, expand_to_blocks
from circuitcheck.run.edits import add_stashes, apply_edit, edit_values, grouped_editor
from circuitcheck.run.heap import release_freed_memory
from circuitcheck.run.readouts import Collector, LogitSink
from circuitcheck.run.replacements import InputCache, Replacements, derangement
from circuitcheck.run.resume import (
    FROM_TOKENS,
    Start,
    StartPoint,
    edited_positions,
    forward_from,
    forward_inside_last_block,
    inputs_worth_caching,
    per_position_blocks,
    resume_hook,
    resume_hooks,
    served_start,
    start_point,
    starts_inside_blocks,
    z_hook,
)
from circuitcheck.run.suffix import check_suffix_start, forward_suffix, suffix_capable, variant_fits
from circuitcheck.zoo.options import self_check_scale

__all__ = [
    "DEFAULT_MAX_ROWS",
    "EngineInputs",
    "Replacements",
    "clean_run",
    "derangement",
    "resume_hooks",
    "run_naive",
    "run_variants",
]

DEFAULT_MAX_ROWS = 4096

PER_POSITION_MAX_SHARE = 0.5
"""Inside the last block, a variant gets one block per edited position when it edits at most this
share of the positions; otherwise one whole-sequence block. Per-position blocks pay for gathering
their positions and scattering the logits back, so whole sequences are cheaper when most positions
change. Only the cost depends on it: both layouts give the same logits."""


@dataclass(frozen=True)
class EngineInputs:
    inputs: dict[str, torch.Tensor]
    masks: dict[str, torch.Tensor]


@dataclass(frozen=True)
class PassBlocks:
    """The blocks of a pass inside the last block when each holds one position (see the module
    docstring): block ``b`` is position ``block_position[b]`` of the pass's variant
    ``block_variant[b]`` (ascending)."""

    block_variant: torch.Tensor
    block_position: torch.Tensor


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


def on_model(model: Any, tokens: torch.Tensor) -> torch.Tensor:
    """``tokens`` on the model's device (a no-op on the CPU)."""
    return tokens.to(next(model.parameters()).device)


def dtype_name(model: Any) -> str:
    """The model's parameter dtype, as :data:`circuitcheck.zoo.options.DTYPES` names it."""
    return str(next(model.parameters()).dtype).removeprefix("torch.")


def host_logits(logits: torch.Tensor) -> torch.Tensor:
    """A forward pass's logits as the readouts take them: float32 on the CPU, whatever the model's dtype and
    device (no copy for a float32 CPU model)."""
    return logits.detach().to("cpu", torch.float32)


def assert_fired(calls: dict[str, int], expected: list[str], context: str) -> None:
    silent = [name for name in expected if calls.get(name, 0) == 0]
    if silent:
        raise SelfCheckError(
            f"{context}: hook(s) {silent} never fired, so their edits were not applied; "
            "the hook name does not reach this model's forward pass"
        )


def clean_run(
    model: Any,
    tokens: torch.Tensor,
    capture: set[str],
    max_rows: int,
    on_chunk: Callable[[int, torch.Tensor], None] | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Clean logits plus the listed activations, chunked over sequences. With ``on_chunk``, each chunk's
    logits go to ``on_chunk(first sequence, logits)`` instead, and the returned logits are empty."""
    logits_parts: list[torch.Tensor] = []
    parts: dict[str, list[torch.Tensor]] = {name: [] for name in capture}

    def saver(name: str) -> Callable[[torch.Tensor], None]:
        def save(act: torch.Tensor) -> None:
            parts[name].append(act.detach().clone())

        return save

    for start in range(0, len(tokens), max_rows):
        chunk = tokens[start : start + max_rows]
        with counted_hooks(model, {name: saver(name) for name in capture}) as calls:
            logits = host_logits(model(on_model(model, chunk)))
        assert_fired(calls, sorted(capture), "clean run")
        if on_chunk is None:
            logits_parts.append(logits)
        else:
            on_chunk(start, logits)
    joined = torch.cat(logits_parts) if logits_parts else torch.empty(0)
    return joined, {k: torch.cat(v) for k, v in parts.items()}


def run_variants(
    model: Any,
    variants: list[Variant],
    data: EngineInputs,
    repl: Replacements,
    max_rows: int = DEFAULT_MAX_ROWS,
    resume: bool = True,
    sink: LogitSink | None = None,
) -> list[torch.Tensor]:
    """Run every variant, stacked into shared passes (module docstring); variant ``k``'s logits go to
    ``sink`` as run ``k``, chunk by chunk. Without a sink, returns each variant's logits ``[n_seqs, seq,
    vocab]`` (tests and benchmarks); with one, returns nothing.

    With ``resume``, each pass starts as late as its variants' edits allow (see
    :mod:`circuitcheck.run.resume`); without it, every pass starts from the tokens.
    """
    if not variants:
        return []
    collector = None
    if sink is None:
        collector = Collector(len(data.inputs[CLEAN]), lambda name: repl.inputs[name].logits(model))
        sink = collector
    for variant in variants:
        for edit in variant.edits:
            repl.prepare(edit)  # fits and precomputations now: run inside a hook they would fire hooks
    points = _start_points(model, variants, data, repl, max_rows, sink) if resume else [FROM_TOKENS] * len(variants)
    by_start: dict[StartPoint, list[int]] = defaultdict(list)
    for k, point in enumerate(points):
        by_start[point].append(k)
    for point, members in sorted(by_start.items(), key=lambda item: item[0].run_order):
        _run_start_point(model, point, members, variants, data, repl, max_rows, sink)
    return [] if collector is None else [collector.outputs[k] for k in range(len(variants))]


def _start_points(
    model: Any, variants: list[Variant], data: EngineInputs, repl: Replacements, max_rows: int, sink: LogitSink
) -> list[StartPoint]:
    """Each variant's start point, after caching the unedited run of every other input where that
    pays (:func:`circuitcheck.run.resume.inputs_worth_caching`)."""
    inside_ok, suffix_ok = starts_inside_blocks(model), suffix_capable(model)
    wanted = resume_hooks(model)
    would_hold = dict.fromkeys(wanted)  # what an input's cache will hold, once made
    points = [
        start_point(model, v, repl.inputs[v.input].acts if v.input in repl.inputs else would_hold, inside_ok,
                    sink.base_from_cache, suffix_ok)
        for v in variants
    ]
    for name in inputs_worth_caching(model, variants, points, repl.inputs):
        with torch.no_grad():
            logits, acts = clean_run(model, data.inputs[name], wanted, max_rows, sink.input_chunks(name))
        repl.inputs[name] = InputCache(acts, known_logits=logits if logits.numel() else None)
    served = [served_start(v, p, repl.inputs) for v, p in zip(variants, points, strict=True)]
    if not suffix_ok:
        return served
    touched = {name: mask.any(0) for name, mask in data.masks.items()}
    base = sink.base_from_cache
    return [_with_suffix(model, v, p, repl, touched, base) for v, p in zip(variants, served, strict=True)]


def _with_suffix(
    model: Any, variant: Variant, point: StartPoint, repl: Replacements, touched: dict[str, torch.Tensor],
    base_from_cache: bool,
) -> StartPoint:
    """``point``, recomputing only the positions from the variant's first edited one where a suffix pass
    (:mod:`circuitcheck.run.suffix`) fits it and its input's cache holds the stream entering every block from
    ``point.layer`` (and the final one, when the input's logits come from the cache)."""
    if point.kind is not Start.LAYER or not variant_fits(variant):
        return point
    n = int(model.cfg.n_layers)
    needs = {resume_hook(model, layer) for layer in range(point.layer, n)}
    if base_from_cache:
        needs.add(resume_hook(model, n))
    if not needs <= repl.inputs[point.input].acts.keys():
        return point
    edited = edited_positions(variant, touched)
    return replace(point, first=int(edited[0]) if len(edited) else 0)


def _run_start_point(
    model: Any,
    point: StartPoint,
    members: list[int],
    variants: list[Variant],
    data: EngineInputs,
    repl: Replacements,
    max_rows: int,
    sink: LogitSink,
) -> None:
    """Run the variants ``members`` that start at ``point`` into ``sink``."""
    if point.kind is Start.CACHED:
        for k in members:
            sink.like_input(k, point.input)
        return
    if point.kind is Start.LAYER:
        _run_layer(model, point, members, variants, data, repl, max_rows, sink)
        return
    if point.kind is Start.INSIDE_LAST_BLOCK:
        check_inside_start(model, repl.inputs[point.input], sink.input_head, point.input)
        sparse, members = _few_positions(variants, members, data.masks)
        _run_per_position(model, variants, sparse, data, repl, max_rows, point, sink)
    _run_in_passes(model, point, members, variants, data, repl, max_rows, sink)


def _run_in_passes(
    model: Any,
    point: StartPoint,
    members: list[int],
    variants: list[Variant],
    data: EngineInputs,
    repl: Replacements,
    max_rows: int,
    sink: LogitSink,
    keep: torch.Tensor | None = None,
    computed: torch.Tensor | None = None,
) -> None:
    """``members`` in passes of at most ``max_rows`` variants (more variants than rows: several passes); each
    pass's logits to ``sink``, whole or at positions ``keep`` (``computed``: the positions the pass computes)."""
    for first in range(0, len(members), max_rows):
        part = members[first : first + max_rows]

        def emit(block: int, seq_first: int, logits: torch.Tensor, part: list[int] = part) -> None:
            if keep is None:
                sink.chunk(part[block], seq_first, logits)
            else:
                sink.positions(part[block], seq_first, keep, logits)

        _run_pass(model, [variants[k] for k in part], data, repl, max_rows, point, emit, keep=computed)


def _kept_positions(sink: LogitSink, members: list[int], seq: int, first: int) -> torch.Tensor | None:
    """The positions ``first..`` whose logits some of ``members`` reads (sorted), or None for all of them."""
    reads = [sink.needed_positions(k) for k in members]
    if any(r is None for r in reads):
        return None if first == 0 else torch.arange(first, seq)
    wanted = torch.stack(reads).any(0)  # type: ignore[arg-type]
    wanted[:first] = False
    kept = wanted.nonzero().flatten()
    return None if first == 0 and len(kept) == seq else kept


def _run_layer(
    model: Any,
    point: StartPoint,
    members: list[int],
    variants: list[Variant],
    data: EngineInputs,
    repl: Replacements,
    max_rows: int,
    sink: LogitSink,
) -> None:
    """Variants that resume at a block: the logits of every position, or, where the sink reads fewer or the
    pass recomputes only a suffix, of those positions only (the others keep the input's logits)."""
    seq = int(data.inputs[CLEAN].shape[1])
    if point.first is not None:
        check_suffix(model, repl.inputs[point.input], sink.input_head, point.input)
    keep = _kept_positions(sink, members, seq, point.first or 0)
    if keep is not None:
        for k in members:
            sink.like_input(k, point.input)
        if not len(keep):
            return
    computed = torch.arange(seq) if keep is None and point.first is not None else keep
    _run_in_passes(model, point, members, variants, data, repl, max_rows, sink, keep, computed)


def check_suffix(
    model: Any, cache: InputCache, logits_head: Callable[[str, int], torch.Tensor], name: str, n: int = 4
) -> None:
    """:func:`circuitcheck.run.suffix.check_suffix_start`, once per input."""
    if cache.suffix_checked:
        return
    want = host_logits(logits_head(name, n))
    tol = 1e-4 * self_check_scale(dtype_name(model))
    check_suffix_start(model, cache.acts, want, lambda layer: resume_hook(model, layer), name, tol)
    cache.suffix_checked = True


def _few_positions(
    variants: list[Variant], members: list[int], masks: dict[str, torch.Tensor]
) -> tuple[dict[int, torch.Tensor], list[int]]:
    """({variant: its edited positions} for the variants that edit at most ``PER_POSITION_MAX_SHARE``
    of the positions, the other variants)."""
    touched = {name: mask.any(0) for name, mask in masks.items()}
    seq = len(next(iter(touched.values())))
    positions = {k: edited_positions(variants[k], touched) for k in members}
    few = {k: p for k, p in positions.items() if len(p) <= PER_POSITION_MAX_SHARE * seq}
    return few, [k for k in members if k not in few]


def _run_per_position(
    model: Any,
    variants: list[Variant],
    positions: dict[int, torch.Tensor],
    data: EngineInputs,
    repl: Replacements,
    max_rows: int,
    point: StartPoint,
    sink: LogitSink,
) -> None:
    """Variants that start inside the last block, one block per edited position (``positions[k]`` for
    ``variants[k]``); every other position keeps the input's unedited logits."""
    if not positions:
        return
    members = list(positions)
    for k in members:
        sink.like_input(k, point.input)
    n_edited = torch.tensor([len(positions[k]) for k in members], dtype=torch.long)
    block_variant = torch.repeat_interleave(torch.tensor(members, dtype=torch.long), n_edited)
    block_position = torch.cat([positions[k] for k in members])
    for first in range(0, len(block_position), max_rows):  # more blocks than rows: several passes
        owner, at = block_variant[first : first + max_rows], block_position[first : first + max_rows]
        used, local = torch.unique(owner, return_inverse=True)  # the pass's variants, and each block's
        blocks = PassBlocks(block_variant=local, block_position=at)

        def emit(block: int, seq: int, logits: torch.Tensor, owner: torch.Tensor = owner, at: torch.Tensor = at,
                 ) -> None:
            sink.position(int(owner[block]), seq, int(at[block]), logits[:, 0])

        _run_pass(model, [variants[k] for k in used.tolist()], data, repl, max_rows, point, emit, blocks)


def check_inside_start(
    model: Any,
    cache: InputCache,
    logits_head: Callable[[str, int], torch.Tensor] | None = None,
    name: str = CLEAN,
    n: int = 4,
) -> None:
    """Starting inside the last block, with no edits, must give the input's logits back.

    The resumed computation mirrors TransformerLens's native block by hand, so it is checked
    against the unedited run's own logits (its first ``n`` sequences, from ``logits_head(name, n)``, or
    recomputed from the cache) once per input before any result uses it.
    """
    if cache.inside_checked:
        return
    last = int(model.cfg.n_layers) - 1
    n = min(n, len(cache.acts[z_hook(last)]))
    with torch.no_grad():
        got = forward_inside_last_block(model, cache.acts[resume_hook(model, last)][:n], cache.acts[z_hook(last)][:n])
    want = host_logits(cache.logits(model)[:n] if logits_head is None else logits_head(name, n))
    got = host_logits(got[: len(want)])
    tol = 1e-4 * self_check_scale(dtype_name(model))
    if not torch.allclose(got, want, atol=tol, rtol=tol):
        raise SelfCheckError(
            f"starting inside block {last} at its cached hook_z does not reproduce the logits of input '{name}' "
            f"(max difference {float((got - want).abs().max()):.2e}); this model's block differs from "
            "TransformerLens's native block: run with --no-resume"
        )
    cache.inside_checked = True


@dataclass(frozen=True)
class _PassEdits:
    """A pass's edits, grouped once and reused by every chunk of sequences."""

    groups: dict[str, list[EditGroup]]
    """Per hook name, its edit groups in order."""
    mask_stack: torch.Tensor
    """``[n_masks, n_seqs, seq]`` the position masks the edits use; groups index it."""
    reads: set[str]
    """Hooks that linear edits read from this pass's own activations."""


def _pass_edits(variants: list[Variant], masks: dict[str, torch.Tensor], blocks: PassBlocks | None) -> _PassEdits:
    by_hook: dict[str, list[tuple[int, HookEdit]]] = defaultdict(list)  # (variant index in the pass, edit)
    for k, variant in enumerate(variants):
        for edit in variant.edits:
            by_hook[edit.site.hook].append((k, edit))
    mask_names = sorted({e.positions for v in variants for e in v.edits})
    mask_stack = torch.stack([masks[name] for name in mask_names]) if mask_names else torch.zeros(0)
    groups = {hook: build_groups(edits, mask_names) for hook, edits in by_hook.items()}
    if blocks is not None:
        groups = {hook: [expand_to_blocks(g, blocks.block_variant) for g in gs] for hook, gs in groups.items()}
    reads = {e.reads for v in variants for e in v.edits if e.reads}
    return _PassEdits(groups, mask_stack, reads)


def _run_pass(
    model: Any,
    variants: list[Variant],
    data: EngineInputs,
    repl: Replacements,
    max_rows: int,
    point: StartPoint,
    emit: Callable[[int, int, torch.Tensor], None],
    blocks: PassBlocks | None = None,
    keep: torch.Tensor | None = None,
) -> None:
    """One block per variant, or per entry of ``blocks``; chunked so that no forward call exceeds
    ``max_rows`` rows (unless one block alone does). Each call's logits go out block by block,
    ``emit(block, first sequence, logits [c, seq or 1 or len(keep), vocab])``, before the next call starts."""
    n_seqs = len(data.inputs[CLEAN])
    n_blocks = len(variants) if blocks is None else len(blocks.block_variant)
    seqs_per_call = max(1, max_rows // n_blocks)
    edits = _pass_edits(variants, data.masks, blocks)
    block_positions = None if blocks is None else blocks.block_position
    for first in range(0, n_seqs, seqs_per_call):
        seqs = torch.arange(first, min(first + seqs_per_call, n_seqs))
        stash: dict[str, torch.Tensor] = {}
        hooks = {
            name: grouped_editor(gs, edits.mask_stack, seqs, n_blocks, repl, stash, block_positions)
            for name, gs in edits.groups.items()
        }
        add_stashes(hooks, edits.reads, stash)
        if point.first is not None:
            assert keep is not None, "a suffix pass reads the positions it recomputes"
            raw, calls = _forward_suffix(model, point, n_blocks, seqs, repl, keep, hooks)
            logits = host_logits(raw)
        else:
            with counted_hooks(model, hooks) as calls:
                logits = host_logits(_forward(model, point, variants, data, seqs, repl, block_positions, keep))
        assert_fired(calls, sorted(hooks), "intervention run")
        view = logits.view((n_blocks, len(seqs)) + logits.shape[1:])
        for block in range(n_blocks):
            emit(block, first, view[block])
        del logits, view
    release_freed_memory()


def _forward(
    model: Any,
    point: StartPoint,
    variants: list[Variant],
    data: EngineInputs,
    seqs: torch.Tensor,
    repl: Replacements,
    block_positions: torch.Tensor | None,
    keep: torch.Tensor | None = None,
) -> torch.Tensor:
    """The stacked call's logits, from the tokens or from the cache at ``point`` (at positions ``keep``
    only, when given: resumed at a block)."""
    if point.kind is Start.TOKENS:
        return model(on_model(model, torch.cat([data.inputs[v.input][seqs] for v in variants])))
    acts = repl.inputs[point.input].acts
    resid = acts[resume_hook(model, point.layer)][seqs]
    if point.kind is Start.LAYER:
        stacked = resid.repeat(len(variants), *([1] * (resid.dim() - 1)))
        return forward_from(model, point.layer, stacked, keep)
    z = acts[z_hook(point.layer)][seqs]
    if block_positions is None:
        return forward_inside_last_block(model, resid.repeat(len(variants), 1, 1), z.repeat(len(variants), 1, 1, 1))
    return forward_inside_last_block(
        model, per_position_blocks(resid, block_positions), per_position_blocks(z, block_positions)
    )


def _forward_suffix(
    model: Any, point: StartPoint, n_blocks: int, seqs: torch.Tensor, repl: Replacements, keep: torch.Tensor,
    hooks: dict[str, Callable[..., Any]],
) -> tuple[torch.Tensor, dict[str, int]]:
    """A suffix pass's logits at ``keep`` (:func:`circuitcheck.run.suffix.forward_suffix`) and its hook counts."""
    acts = repl.inputs[point.input].acts
    first = point.first or 0
    resid = acts[resume_hook(model, point.layer)][seqs]
    prefix = [acts[resume_hook(model, layer)][seqs, :first] for layer in range(point.layer, int(model.cfg.n_layers))]
    stacked = resid.repeat(n_blocks, *([1] * (resid.dim() - 1)))
    return forward_suffix(model, point.layer, first, stacked, prefix, keep.to(resid.device), n_blocks, hooks)


def run_naive(model: Any, variant: Variant, data: EngineInputs, repl: Replacements) -> torch.Tensor:
    """The reference: one un-stacked forward pass for one variant (used by tests)."""
    seqs = torch.arange(len(data.inputs[CLEAN]))
    hooks: dict[str, Callable[[torch.Tensor], Any]] = {}
    stash: dict[str, torch.Tensor] = {}
    for e in variant.edits:
        repl.prepare(e)
    for name in {e.site.hook for e in variant.edits}:
        edits = [e for e in variant.edits if e.site.hook == name]

        def edit_one(act: torch.Tensor, edits: list[HookEdit] = edits) -> torch.Tensor:
            for e in edits:
                read = stash[e.reads] if e.reads else None
                act = apply_edit(act, e, edit_values(repl, e, seqs, act, read), data.masks[e.positions])
            return act

        hooks[name] = edit_one
    add_stashes(hooks, {e.reads for e in variant.edits if e.reads}, stash)
    with counted_hooks(model, hooks) as calls:
        logits = host_logits(model(on_model(model, data.inputs[variant.input])))
    assert_fired(calls, sorted(hooks), "naive run")
    return logits
