"""What edits write, and the hook functions that write it.

``grouped_editor`` is the stacked engine's hook: every group of edits at one hook
(see :mod:`circuitcheck.run.edit_groups`) written into its variants' blocks of rows.
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


def grouped_editor(
    groups: list[EditGroup],
    stack: torch.Tensor,
    rows: torch.Tensor,
    n_blocks: int,
    repl: Replacements,
    stash: dict[str, torch.Tensor],
    cols: torch.Tensor | None,
) -> Callable[[torch.Tensor], torch.Tensor]:
    """One hook function applying every group's edits to its blocks of a stacked batch."""
    c = len(rows)

    def edit_all(act: torch.Tensor) -> torch.Tensor:
        # Edited in a copy: a hook's input can be the residual stream itself (``hook_resid_mid``
        # is ``ln2``'s input, which the block also adds to the MLP's output), and the edit must
        # reach only the hook's consumer, as a hook returning a new tensor does.
        blocks = act.clone(memory_format=torch.contiguous_format).view((n_blocks, c) + act.shape[1:])
        for group in groups:
            hook, head = group.template.site.hook, group.head
            view = head_view(blocks, hook, head)
            variants, masks = member_masks(group, stack, rows, view.dim(), cols)
            if group.per_variant:  # computed from this pass's own (already per-block) activations
                read = stash[group.template.reads].reshape((n_blocks, c) + stash[group.template.reads].shape[1:])  # type: ignore[index]
                if head is None:
                    values = edit_values(repl, group.template, rows, blocks[0], read[variants])
                else:
                    values = torch.stack([head_values(edit_values(repl, group.template, rows, blocks[k], read[k]), hook, head) for k in variants.tolist()])
            else:
                values = head_values(edit_values(repl, group.template, rows, blocks[0]), hook, head)
                values = values.unsqueeze(0) if cols is None else per_position_values(values, cols[variants])
            if not torch.isfinite(values).all():  # what the edit writes; the rest was there before
                where = (~torch.isfinite(values)).reshape(len(values), c, -1).any(-1).nonzero()[0]
                raise SelfCheckError(
                    f"non-finite values after the edit '{group.template}' at hook {hook!r}, "
                    f"sequence {int(rows[where[1]])} (variant {int(variants[where[0]])} of the pass)"
                )
            view[variants] = values.expand((len(variants),) + values.shape[1:]) if masks is None else torch.where(masks, values, view[variants])
        return blocks.reshape(act.shape)

    return edit_all


def add_stashes(hooks: dict[str, Callable[[torch.Tensor], Any]], reads: set[str], stash: dict[str, torch.Tensor]) -> None:
    """Keep this pass's activation at every hook a linear edit reads (it fires earlier in the pass)."""
    for name in reads:
        if name in hooks:
            raise SelfCheckError(f"hook {name!r} is both edited and read by a linear edit in one pass")

        def keep(act: torch.Tensor, name: str = name) -> None:
            stash[name] = act

        hooks[name] = keep
