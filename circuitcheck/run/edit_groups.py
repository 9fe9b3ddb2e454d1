"""Edits applied to every variant of a stacked pass in a few tensor operations.

In a pass that stacks ``K`` variants, the edits at one hook fall into groups that
write the same values (same source, seed, reads ...) and differ only in where:
which positions and which head. Each group computes its values once, builds all its
members' masks in one go from a stack of the run's position masks, and writes into
every member variant's block of rows with one ``torch.where``. Edits of one variant
within a group are merged first, so they compose; groups apply in order, so edits
of one variant in different groups compose as they would one after the other.
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
    variants: torch.Tensor
    """``[m]`` the variant index of each member edit."""
    positions: torch.Tensor
    """``[m]`` index of each member's position mask in the pass's mask stack."""

    @property
    def per_variant(self) -> bool:
        """Linear edits read this run's own activation, so their values differ per variant."""
        return self.template.source == "linear"

    @property
    def head(self) -> int | None:
        return self.template.site.head


@lru_cache(maxsize=65536)
def group_key(edit: HookEdit) -> HookEdit:
    """Edits that write the same values into the same head, wherever they apply."""
    return replace(edit, positions="")


def build_groups(hook_edits: list[tuple[int, HookEdit]], mask_names: list[str]) -> list[EditGroup]:
    """Group one hook's (variant index, edit) pairs by the values they write, in first-seen order."""
    members: dict[HookEdit, list[tuple[int, HookEdit]]] = {}
    for k, edit in hook_edits:
        members.setdefault(group_key(edit), []).append((k, edit))
    return [
        EditGroup(
            template=pairs[0][1],
            variants=torch.tensor([k for k, _ in pairs]),
            positions=torch.tensor([mask_names.index(e.positions) for _, e in pairs]),
        )
        for pairs in members.values()
    ]


def expand_to_blocks(group: EditGroup, block_variant: torch.Tensor) -> EditGroup:
    """The group over a pass's blocks instead of its variants: each member edit applies to every
    block of its variant (``block_variant[b]``: the variant of block ``b``, ascending)."""
    start = torch.searchsorted(block_variant, group.variants)
    counts = torch.searchsorted(block_variant, group.variants, right=True) - start
    member = torch.repeat_interleave(torch.arange(len(counts)), counts)
    offset = torch.arange(len(member)) - torch.repeat_interleave(counts.cumsum(0) - counts, counts)
    return EditGroup(group.template, variants=start[member] + offset, positions=group.positions[member])


def head_view(blocks: torch.Tensor, hook: str, head: int | None) -> torch.Tensor:
    """The part of ``blocks [K, c, ...]`` an edit of ``head`` touches (a view: writes go through)."""
    if head is None:
        return blocks
    return blocks[:, :, head] if heads_first(hook) else blocks[:, :, :, head]


def head_values(values: torch.Tensor, hook: str, head: int | None) -> torch.Tensor:
    """The same selection on values shaped like one block ``[c, ...]``."""
    if head is None:
        return values
    return values[:, head] if heads_first(hook) else values[:, :, head]


def per_position_values(values: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """Values ``[c, s, ...]`` for blocks that each hold one position: ``[len(cols), c, 1, ...]``."""
    return values[:, cols].transpose(0, 1).unsqueeze(2)


def member_masks(
    group: EditGroup, stack: torch.Tensor, rows: torch.Tensor, view_dims: int, cols: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(unique variant indices ``[g]``, their merged position masks shaped to broadcast over
    ``[g, c, ...]`` with ``view_dims`` dimensions), or None for the mask when it selects everything.
    With ``cols``, block ``k`` holds only position ``cols[k]`` (a pass inside the last block)."""
    pos = stack[:, rows][group.positions]  # [m, c, s]
    if cols is not None:
        at = cols[group.variants].reshape(-1, 1, 1).expand(-1, pos.shape[1], 1)
        pos = pos.gather(2, at)  # [m, c, 1]
    variants, inverse = torch.unique(group.variants, return_inverse=True)
    if len(variants) < len(group.variants):
        pos = torch.zeros((len(variants),) + pos.shape[1:], dtype=torch.int32).index_add_(0, inverse, pos.int()) > 0
    if bool(pos.all()):
        return variants, None
    return variants, pos.reshape(pos.shape + (1,) * (view_dims - pos.dim()))
