"""Edits applied to every block of a stacked pass in a few tensor operations.

A pass stacks blocks of rows, one per variant (or, inside the last block, one per
variant and edited position: see :mod:`circuitcheck.run.engine`). The edits at one
hook fall into groups that write the same values (same source, seed, reads ...) and
differ only in where: which block, which positions and which head. Each group computes
its values once, builds all its members' masks in one go from the pass's stack of
position masks, and writes into every member's block with one ``torch.where``. Edits
of one block within a group are merged first, so they compose; groups apply in order,
so edits of one variant in different groups compose as they would one after the other.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache

import torch

from circuitcheck.plan.interventions import HookEdit


def heads_first(hook: str) -> bool:
    """Attention patterns and scores are ``[batch, head, query, key]``; other hooks put positions second."""
    return hook.endswith(("hook_pattern", "hook_attn_scores"))


@dataclass(frozen=True)
class EditGroup:
    template: HookEdit
    """A member edit: the group's values are computed from it (they do not depend on positions)."""
    blocks: torch.Tensor
    """``[m]`` the block of the pass each member edit writes into (one block per variant: the
    variant's index in the pass)."""
    mask_index: torch.Tensor
    """``[m]`` index of each member's position mask in the pass's mask stack."""

    @property
    def values_per_block(self) -> bool:
        """Linear edits read this pass's own activation, so their values differ per block."""
        return self.template.source == "linear"

    @property
    def head(self) -> int | None:
        return self.template.site.head


@lru_cache(maxsize=65536)
def group_key(edit: HookEdit) -> HookEdit:
    """Edits that write the same values into the same head, wherever they apply."""
    return replace(edit, positions="")


def build_groups(hook_edits: list[tuple[int, HookEdit]], mask_names: list[str]) -> list[EditGroup]:
    """Group one hook's (variant index, edit) pairs by the values they write, in first-seen order;
    each variant is one block (``expand_to_blocks`` then spreads a variant over several)."""
    members: dict[HookEdit, list[tuple[int, HookEdit]]] = {}
    for k, edit in hook_edits:
        members.setdefault(group_key(edit), []).append((k, edit))
    return [
        EditGroup(
            template=pairs[0][1],
            blocks=torch.tensor([k for k, _ in pairs]),
            mask_index=torch.tensor([mask_names.index(e.positions) for _, e in pairs]),
        )
        for pairs in members.values()
    ]


def expand_to_blocks(group: EditGroup, block_variant: torch.Tensor) -> EditGroup:
    """The group of a one-block-per-variant pass moved to a pass with several blocks per variant:
    each member edit applies to every block of its variant (``block_variant[b]``: the variant of
    block ``b``, ascending)."""
    variants = group.blocks  # one block per variant: block k is variant k
    start = torch.searchsorted(block_variant, variants)
    counts = torch.searchsorted(block_variant, variants, right=True) - start
    member = torch.repeat_interleave(torch.arange(len(counts)), counts)
    offset = torch.arange(len(member)) - torch.repeat_interleave(counts.cumsum(0) - counts, counts)
    return EditGroup(group.template, blocks=start[member] + offset, mask_index=group.mask_index[member])


def head_view(stacked: torch.Tensor, hook: str, head: int | None) -> torch.Tensor:
    """The part of ``stacked [n_blocks, c, ...]`` an edit of ``head`` touches (a view: writes go through)."""
    if head is None:
        return stacked
    return stacked[:, :, head] if heads_first(hook) else stacked[:, :, :, head]


def head_values(values: torch.Tensor, hook: str, head: int | None) -> torch.Tensor:
    """The same selection on values shaped like one block ``[c, ...]``."""
    if head is None:
        return values
    return values[:, head] if heads_first(hook) else values[:, :, head]


def per_position_values(values: torch.Tensor, block_positions: torch.Tensor) -> torch.Tensor:
    """Values ``[c, s, ...]`` for blocks that each hold one position: ``[len(block_positions), c, 1, ...]``."""
    return values[:, block_positions].transpose(0, 1).unsqueeze(2)


def member_masks(
    group: EditGroup,
    mask_stack: torch.Tensor,
    seqs: torch.Tensor,
    view_dims: int,
    block_positions: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(the group's blocks ``[g]``, unique, and their merged position masks shaped to broadcast over
    ``[g, c, ...]`` with ``view_dims`` dimensions, or None for the mask when it selects everything).

    ``seqs``: the chunk's sequence indices. With ``block_positions``, block ``b`` holds only position
    ``block_positions[b]`` (a pass inside the last block)."""
    pos = mask_stack[:, seqs][group.mask_index]  # [m, c, s]
    if block_positions is not None:
        at = block_positions[group.blocks].reshape(-1, 1, 1).expand(-1, pos.shape[1], 1)
        pos = pos.gather(2, at)  # [m, c, 1]
    blocks, inverse = torch.unique(group.blocks, return_inverse=True)
    if len(blocks) < len(group.blocks):  # several members in one block: their masks merge
        merged = torch.zeros((len(blocks),) + pos.shape[1:], dtype=torch.int32)
        pos = merged.index_add_(0, inverse, pos.int()) > 0
    if bool(pos.all()):
        return blocks, None
    return blocks, pos.reshape(pos.shape + (1,) * (view_dims - pos.dim()))
