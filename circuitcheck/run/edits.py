"""What edits write, and the hook functions that write it.

``grouped_editor`` is the stacked engine's hook: every group of edits at one hook
(see :mod:`circuitcheck.run.edit_groups`) written into its blocks of rows.
``apply_edit`` is the one-variant reference the naive loop uses.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from circuitcheck.errors import SelfCheckError
from circuitcheck.plan.interventions import PATTERN_RULES, HookEdit
from circuitcheck.run.edit_groups import (
    EditGroup,
    head_values,
    head_view,
    heads_first,
    member_masks,
    per_position_values,
)
from circuitcheck.run.replacements import Replacements


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


def edit_values(
    repl: Replacements, edit: HookEdit, seqs: torch.Tensor, act: torch.Tensor, read: torch.Tensor | None = None
) -> torch.Tensor:
    """What ``edit`` writes into ``act`` (sequences ``seqs``); ``read`` is this run's ``edit.reads``
    activation, for linear edits."""
    if edit.source == "linear":
        assert read is not None, "linear edits need the activation they read"
        j, b = repl.linear_map(edit)
        return read @ j.T + b
    if edit.source in PATTERN_RULES:
        return rule_pattern(edit.source, act.shape, act.dtype)
    return repl.values(edit, seqs)


def apply_edit(act: torch.Tensor, edit: HookEdit, repl: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``act`` with ``repl`` written at ``mask``'s positions (and ``edit.site.head`` only)."""
    if heads_first(edit.site.hook):
        moved = apply_edit_positions_second(act.transpose(1, 2), edit, repl.transpose(1, 2), mask)
        return moved.transpose(1, 2)
    return apply_edit_positions_second(act, edit, repl, mask)


def apply_edit_positions_second(
    act: torch.Tensor, edit: HookEdit, repl: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    if edit.site.head is None:
        keep = mask.reshape(mask.shape + (1,) * (act.dim() - 2))
        return torch.where(keep, repl, act)
    out = act.clone()
    h = edit.site.head
    keep = mask.reshape(mask.shape + (1,) * (act.dim() - 3))
    out[:, :, h] = torch.where(keep, repl[:, :, h], act[:, :, h])
    return out


def grouped_editor(
    groups: list[EditGroup],
    mask_stack: torch.Tensor,
    seqs: torch.Tensor,
    n_blocks: int,
    repl: Replacements,
    stash: dict[str, torch.Tensor],
    block_positions: torch.Tensor | None,
) -> Callable[[torch.Tensor], torch.Tensor]:
    """One hook function applying every group's edits to its blocks of a stacked batch.

    ``seqs``: the chunk's sequence indices (each block holds these sequences); ``block_positions``:
    in a pass inside the last block, the one position each block holds."""
    c = len(seqs)

    def edit_all(act: torch.Tensor) -> torch.Tensor:
        # Edited in a copy: a hook's input can be the residual stream itself (``hook_resid_mid``
        # is ``ln2``'s input, which the block also adds to the MLP's output), and the edit must
        # reach only the hook's consumer, as a hook returning a new tensor does.
        stacked = act.clone(memory_format=torch.contiguous_format).view((n_blocks, c) + act.shape[1:])
        for group in groups:
            view = head_view(stacked, group.template.site.hook, group.head)
            every_head = group.head is None and heads_first(group.template.site.hook)
            blocks, masks = member_masks(group, mask_stack, seqs, view.dim() - every_head, block_positions)
            if masks is not None and every_head:  # [g, c, head, query, key]: the positions are the queries
                masks = masks.unsqueeze(2)
            values = _group_values(group, stacked, blocks, seqs, repl, stash, block_positions)
            _check_finite_values(values, group, blocks, seqs)
            if masks is None:
                view[blocks] = values.expand((len(blocks),) + values.shape[1:])
            else:
                view[blocks] = torch.where(masks, values, view[blocks])
        return stacked.reshape(act.shape)

    return edit_all


def _group_values(
    group: EditGroup,
    stacked: torch.Tensor,
    blocks: torch.Tensor,
    seqs: torch.Tensor,
    repl: Replacements,
    stash: dict[str, torch.Tensor],
    block_positions: torch.Tensor | None,
) -> torch.Tensor:
    """What the group writes, shaped to broadcast over ``stacked[blocks]`` (head selected)."""
    template, hook, head = group.template, group.template.site.hook, group.head
    if not group.values_per_block:  # the same values for every block: computed once
        values = head_values(edit_values(repl, template, seqs, stacked[0]), hook, head)
        return values.unsqueeze(0) if block_positions is None else per_position_values(values, block_positions[blocks])
    # Computed from this pass's own activations, which are already per block.
    assert template.reads is not None, "linear edits name the activation they read"
    read = stash[template.reads]
    read = read.reshape((len(stacked), len(seqs)) + read.shape[1:])
    if head is None:
        return edit_values(repl, template, seqs, stacked[0], read[blocks])
    return torch.stack(
        [head_values(edit_values(repl, template, seqs, stacked[b], read[b]), hook, head) for b in blocks.tolist()]
    )


def _check_finite_values(values: torch.Tensor, group: EditGroup, blocks: torch.Tensor, seqs: torch.Tensor) -> None:
    """What the edit writes must be finite (what it leaves was there before, and checked then)."""
    if torch.isfinite(values).all():
        return
    where = (~torch.isfinite(values)).reshape(len(values), len(seqs), -1).any(-1).nonzero()[0]
    raise SelfCheckError(
        f"non-finite values after the edit '{group.template}' at hook {group.template.site.hook!r}, "
        f"sequence {int(seqs[where[1]])} (variant {int(blocks[where[0]])} of the pass)"
    )


def add_stashes(
    hooks: dict[str, Callable[[torch.Tensor], Any]], reads: set[str], stash: dict[str, torch.Tensor]
) -> None:
    """Keep this pass's activation at every hook a linear edit reads (it fires earlier in the pass)."""
    for name in reads:
        if name in hooks:
            raise SelfCheckError(f"hook {name!r} is both edited and read by a linear edit in one pass")

        def keep(act: torch.Tensor, name: str = name) -> None:
            stash[name] = act

        hooks[name] = keep
