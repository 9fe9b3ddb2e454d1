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
from dataclasses import dataclass, replace
from typing import Any

import torch

from circuitcheck.errors import SelfCheckError
from circuitcheck.plan.components import HookSite
from circuitcheck.plan.interventions import CLEAN, PATTERN_RULES, HookEdit, PathSpec, Variant
from circuitcheck.run.edit_groups import EditGroup, build_groups, head_values, head_view, heads_first, member_masks
from circuitcheck.run.linearize import fit_jacobian, mlp_function
from circuitcheck.run.paths import path_values, sender_delta

DEFAULT_MAX_ROWS = 4096


@dataclass(frozen=True)
class EngineInputs:
    inputs: dict[str, torch.Tensor]
    masks: dict[str, torch.Tensor]


def derangement(n: int, seed: int) -> torch.Tensor:
    """A seeded permutation of ``range(n)`` with no fixed point (n >= 2).

    A random ordering closed into one cycle: each element maps to the next one in
    the ordering, so no sequence is ever "resampled" from itself.
    """
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(n, generator=gen)
    perm = torch.empty(n, dtype=torch.long)
    perm[order] = order.roll(-1)
    return perm


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


class Replacements:
    """Replacement activations for edits, computed once from the clean cache."""

    def __init__(self, cache: dict[str, torch.Tensor], model: Any = None, masks: dict[str, torch.Tensor] | None = None) -> None:
        self.cache = cache
        self.model = model
        self.masks = masks or {}
        self._means: dict[str, torch.Tensor] = {}
        self._perms: dict[int, torch.Tensor] = {}
        self._linear: dict[HookEdit, tuple[torch.Tensor, torch.Tensor]] = {}
        self._paths: dict[HookEdit, torch.Tensor] = {}
        self._deltas: dict[PathSpec, torch.Tensor] = {}

    def prepare(self, edit: HookEdit) -> None:
        """Fit or precompute what an edit needs, outside any hook context (a module run
        inside a hook would fire the hooks attached to it)."""
        if edit.source == "linear":
            self.linear_map(edit)
        if edit.source == "path" and edit not in self._paths:
            assert edit.path is not None, "path edits carry a PathSpec"
            # The receiver's input is the same for every head of its layer and every position choice.
            shared = replace(edit, site=HookSite(edit.site.hook), positions="")
            if shared not in self._paths:
                self._paths[shared] = path_values(self.model, edit, self.cache, self.sender_delta(edit.path))
            self._paths[edit] = self._paths[shared]

    def sender_delta(self, path: PathSpec) -> torch.Tensor:
        """The sender's change to the residual stream, computed once per sender and ablation."""
        key = replace(path, resid="")
        if key not in self._deltas:
            everyone = torch.arange(len(self.cache[path.sender.hook]))
            alternative = self.values(HookEdit(HookSite(path.sender.hook), path.sender_at, path.source, path.seed), everyone)
            self._deltas[key] = sender_delta(self.model, path, self.cache, alternative, self.masks[path.sender_at])
        return self._deltas[key]

    def linear_map(self, edit: HookEdit) -> tuple[torch.Tensor, torch.Tensor]:
        """The fitted (J, b) of a ``linear`` edit; fitted once, outside any hook context."""
        if edit not in self._linear:
            assert edit.reads is not None and edit.fit is not None, "linear edits name their input and fit positions"
            layer = int(edit.site.hook.split(".")[1])
            inputs = self.cache[edit.reads][self.masks[edit.fit]]
            self._linear[edit] = fit_jacobian(mlp_function(self.model, layer), inputs, edit.jacobian)
        return self._linear[edit]

    def values(self, edit: HookEdit, rows: torch.Tensor) -> torch.Tensor:
        if edit.source == "path":
            return self._paths[edit][rows]
        clean = self.cache[edit.site.hook]
        if edit.source == "zero":
            return clean.new_zeros((len(rows),) + clean.shape[1:])
        if edit.source == "mean":
            if edit.site.hook not in self._means:
                self._means[edit.site.hook] = clean.mean(0, keepdim=True)
            return self._means[edit.site.hook].expand((len(rows),) + clean.shape[1:])
        if edit.source == "resample":
            assert edit.seed is not None, "resample edits carry a seed"
            if edit.seed not in self._perms:
                self._perms[edit.seed] = derangement(len(clean), edit.seed)
            return clean[self._perms[edit.seed][rows]]
        return clean[rows]


def rule_pattern(rule: str, shape: torch.Size, dtype: torch.dtype) -> torch.Tensor:
    """A replacement attention pattern ``[batch, head, query, key]`` that follows ``rule``."""
    q = torch.arange(shape[-2])
    key = {"previous": (q - 1).clamp(min=0), "self": q}.get(rule)
    if key is None:  # uniform over the causal prefix
        causal = torch.ones(shape[-2], shape[-1], dtype=dtype).tril()
        rows = causal / causal.sum(-1, keepdim=True)
    else:
        rows = torch.nn.functional.one_hot(key, shape[-1]).to(dtype)
    return rows.expand(shape)


def edit_values(repl: Replacements, edit: HookEdit, rows: torch.Tensor, act: torch.Tensor, read: torch.Tensor | None = None) -> torch.Tensor:
    """What ``edit`` writes into ``act``; ``read`` is this run's ``edit.reads`` activation, for linear edits."""
    if edit.source == "linear":
        assert read is not None, "linear edits need the activation they read"
        j, b = repl.linear_map(edit)
        return read @ j.T + b
    if edit.source in PATTERN_RULES:
        return rule_pattern(edit.source, act.shape, act.dtype)
    return repl.values(edit, rows)


def apply_edit(act: torch.Tensor, edit: HookEdit, repl: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``act`` with ``repl`` written at ``mask``'s positions (and ``edit.site.head`` only)."""
    if heads_first(edit.site.hook):
        moved = apply_edit_positions_second(act.transpose(1, 2), edit, repl.transpose(1, 2), mask)
        return moved.transpose(1, 2)
    return apply_edit_positions_second(act, edit, repl, mask)


def apply_edit_positions_second(act: torch.Tensor, edit: HookEdit, repl: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    if edit.site.head is None:
        keep = mask.reshape(mask.shape + (1,) * (act.dim() - 2))
        return torch.where(keep, repl, act)
    out = act.clone()
    h = edit.site.head
    keep = mask.reshape(mask.shape + (1,) * (act.dim() - 3))
    out[:, :, h] = torch.where(keep, repl[:, :, h], act[:, :, h])
    return out


def run_variants(
    model: Any,
    variants: list[Variant],
    data: EngineInputs,
    repl: Replacements,
    max_rows: int = DEFAULT_MAX_ROWS,
    resume: bool = True,
) -> list[torch.Tensor]:
    """Logits ``[n_seqs, seq, vocab]`` for each variant, stacked into shared passes.

    With ``resume``, variants whose edits all sit in layers >= k start from the clean
    run's cached residual stream at layer k (when the cache holds it) instead of
    recomputing the layers below, which those edits cannot change.
    """
    if not variants:
        return []
    for v in variants:
        for e in v.edits:
            repl.prepare(e)  # fits and precomputations now: run inside a hook they would fire hooks
    by_start: dict[int, list[int]] = defaultdict(list)
    for k, v in enumerate(variants):
        by_start[start_layer(model, v, repl.cache) if resume else FULL].append(k)
    outputs: list[torch.Tensor | None] = [None] * len(variants)
    for layer, members in sorted(by_start.items()):
        for first in range(0, len(members), max_rows):  # more variants than rows: several passes
            part = members[first : first + max_rows]
            for k, logits in zip(part, _run_pass(model, [variants[k] for k in part], data, repl, max_rows, layer), strict=True):
                outputs[k] = logits
    return [o for o in outputs if o is not None]


FULL = -1
"""Start layer meaning "run the whole model from the tokens"."""


def resume_hook(model: Any, layer: int) -> str:
    """The cached activation a pass starting at ``layer`` reads (``n_layers``: the final residual stream)."""
    n = int(model.cfg.n_layers)
    return f"blocks.{layer}.hook_resid_pre" if layer < n else f"blocks.{n - 1}.hook_resid_post"


def resume_hooks(model: Any) -> set[str]:
    """Every activation a resumed pass may start from (for the clean run to capture)."""
    return {resume_hook(model, layer) for layer in range(int(model.cfg.n_layers) + 1)}


def _layer_of(model: Any, hook: str) -> int:
    if hook.startswith("blocks."):
        return int(hook.split(".")[1])
    if hook.startswith(("ln_final", "unembed", "hook_unembed")):
        return int(model.cfg.n_layers)
    return FULL


def start_layer(model: Any, variant: Variant, cache: dict[str, torch.Tensor]) -> int:
    """The first layer a variant's edits can change, if the clean cache holds its input; else FULL."""
    if variant.input != CLEAN or not variant.edits:
        return FULL  # an un-edited variant runs in full: it is the stacking self-check
    hooks = [e.site.hook for e in variant.edits] + [e.reads for e in variant.edits if e.reads]
    layer = min(_layer_of(model, h) for h in hooks)
    if layer <= 0 or resume_hook(model, layer) not in cache:
        return FULL
    return layer


def forward_from(model: Any, layer: int, resid: torch.Tensor) -> torch.Tensor:
    """The logits, running blocks ``layer..`` on a residual stream, then the final norm and unembedding."""
    x = resid
    for block in list(model.blocks)[layer:]:
        out = block(x)
        x = out[0] if isinstance(out, tuple) else out
    return model.unembed(model.ln_final(x))


def _run_pass(model: Any, variants: list[Variant], data: EngineInputs, repl: Replacements, max_rows: int, layer: int) -> list[torch.Tensor]:
    n_seqs = len(data.inputs[CLEAN])
    per_chunk = max(1, max_rows // len(variants))
    outputs: list[list[torch.Tensor]] = [[] for _ in variants]
    by_hook: dict[str, list[tuple[int, HookEdit]]] = defaultdict(list)
    for k, variant in enumerate(variants):
        for edit in variant.edits:
            by_hook[edit.site.hook].append((k, edit))
    mask_names = sorted({e.positions for v in variants for e in v.edits})
    stack = torch.stack([data.masks[name] for name in mask_names]) if mask_names else torch.zeros(0)
    groups = {hook: build_groups(edits, mask_names) for hook, edits in by_hook.items()}
    reads = {e.reads for v in variants for e in v.edits if e.reads}
    for start in range(0, n_seqs, per_chunk):
        rows = torch.arange(start, min(start + per_chunk, n_seqs))
        stash: dict[str, torch.Tensor] = {}
        hooks = {name: _grouped_editor(g, stack, rows, len(variants), repl, stash) for name, g in groups.items()}
        _add_stashes(hooks, reads, stash)
        with counted_hooks(model, hooks) as calls:
            if layer == FULL:
                logits = model(torch.cat([data.inputs[v.input][rows] for v in variants])).detach()
            else:
                resid = repl.cache[resume_hook(model, layer)][rows]
                logits = forward_from(model, layer, resid.repeat(len(variants), *([1] * (resid.dim() - 1)))).detach()
        assert_fired(calls, sorted(hooks), "intervention run")
        for k, part in enumerate(logits.split(len(rows))):
            outputs[k].append(part)
    return [torch.cat(parts) for parts in outputs]


def _grouped_editor(
    groups: list[EditGroup], stack: torch.Tensor, rows: torch.Tensor, n_blocks: int, repl: Replacements, stash: dict[str, torch.Tensor],
) -> Callable[[torch.Tensor], torch.Tensor]:
    """One hook function applying every group's edits to its variants' blocks of a stacked batch."""
    c = len(rows)

    def edit_all(act: torch.Tensor) -> torch.Tensor:
        # Edited in place: the activation is this pass's own tensor, and only the edited
        # variants' rows of the edited head are rewritten.
        blocks = act.view((n_blocks, c) + act.shape[1:]) if act.is_contiguous() else act.reshape((n_blocks, c) + act.shape[1:])
        for group in groups:
            hook, head = group.template.site.hook, group.head
            view = head_view(blocks, hook, head)
            variants, masks = member_masks(group, stack, rows, view.dim())
            if group.per_variant:
                read = stash[group.template.reads].reshape((n_blocks, c) + stash[group.template.reads].shape[1:])  # type: ignore[index]
                values = torch.stack([head_values(edit_values(repl, group.template, rows, blocks[k], read[k]), hook, head) for k in variants.tolist()])
            else:
                values = head_values(edit_values(repl, group.template, rows, blocks[0]), hook, head).unsqueeze(0)
            if not torch.isfinite(values).all():  # what the edit writes; the rest was there before
                where = (~torch.isfinite(values)).reshape(len(values), c, -1).any(-1).nonzero()[0]
                raise SelfCheckError(
                    f"non-finite values after the edit '{group.template}' at hook {hook!r}, "
                    f"sequence {int(rows[where[1]])} (variant {int(variants[where[0]])} of the pass)"
                )
            view[variants] = values.expand((len(variants),) + values.shape[1:]) if masks is None else torch.where(masks, values, view[variants])
        return blocks.reshape(act.shape)

    return edit_all


def _add_stashes(hooks: dict[str, Callable[[torch.Tensor], Any]], reads: set[str], stash: dict[str, torch.Tensor]) -> None:
    """Keep this pass's activation at every hook a linear edit reads (it fires earlier in the pass)."""
    for name in reads:
        if name in hooks:
            raise SelfCheckError(f"hook {name!r} is both edited and read by a linear edit in one pass")

        def keep(act: torch.Tensor, name: str = name) -> None:
            stash[name] = act

        hooks[name] = keep


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
    _add_stashes(hooks, {e.reads for e in variant.edits if e.reads}, stash)
    with counted_hooks(model, hooks) as calls:
        logits = model(data.inputs[variant.input]).detach()
    assert_fired(calls, sorted(hooks), "naive run")
    return logits
