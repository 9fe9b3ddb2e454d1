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

import torch

from circuitcheck.plan.components import HookSite
from circuitcheck.plan.interventions import HookEdit

HEADED_HOOKS = ("hook_z", "hook_q", "hook_k", "hook_v", "hook_pattern", "hook_attn_scores")
"""Hooks whose activations carry a head dimension (third for [b, s, h, d], second for patterns)."""


def heads_first(hook: str) -> bool:
    """Attention patterns and scores are ``[batch, head, query, key]``; other hooks put positions second."""
    return hook.endswith(("hook_pattern", "hook_attn_scores"))


@dataclass(frozen=True)
class EditGroup:
    template: HookEdit
    """A member edit: the group's values are computed from it (they do not depend on positions or head)."""
    variants: torch.Tensor
    """``[m]`` the variant index of each member edit."""
    positions: torch.Tensor
    """``[m]`` index of each member's position mask in the pass's mask stack."""
    heads: torch.Tensor
    """``[m]`` each member's head, -1 for all heads."""

    @property
    def per_variant(self) -> bool:
        """Linear edits read this run's own activation, so their values differ per variant."""
        return self.template.source == "linear"


def group_key(edit: HookEdit) -> HookEdit:
    return replace(edit, positions="", site=HookSite(edit.site.hook))


def build_groups(hook_edits: list[tuple[int, HookEdit]], mask_names: list[str]) -> list[EditGroup]:
    """Group one hook's (variant index, edit) pairs by the values they write, in first-seen order."""
    members: dict[HookEdit, list[tuple[int, HookEdit]]] = {}
    for k, edit in hook_edits:
        key = group_key(edit)
        if edit.source == "path":  # precomputed per receiver edit: keep each its own values
            key = replace(edit, positions="")
        members.setdefault(key, []).append((k, edit))
    groups = []
    for pairs in members.values():
        groups.append(
            EditGroup(
                template=pairs[0][1],
                variants=torch.tensor([k for k, _ in pairs]),
                positions=torch.tensor([mask_names.index(e.positions) for _, e in pairs]),
                heads=torch.tensor([-1 if e.site.head is None else e.site.head for _, e in pairs]),
            )
        )
    return groups


def member_masks(group: EditGroup, stack: torch.Tensor, rows: torch.Tensor, act: torch.Tensor, n_blocks: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(unique variant indices ``[g]``, their merged masks shaped to broadcast over one block of ``act``)."""
    hook = group.template.site.hook
    pos = stack[:, rows][group.positions]  # [m, c, s]
    if hook.endswith(HEADED_HOOKS):
        n_heads = act.shape[1] if heads_first(hook) else act.shape[2]
        head_mask = (group.heads[:, None] == torch.arange(n_heads)[None, :]) | (group.heads[:, None] < 0)
        pos = pos[:, :, None, :] & head_mask[:, None, :, None] if heads_first(hook) else pos[..., None] & head_mask[:, None, None, :]
    variants, inverse = torch.unique(group.variants, return_inverse=True)
    if len(variants) < len(group.variants):
        merged = torch.zeros((len(variants),) + pos.shape[1:], dtype=torch.int32).index_add_(0, inverse, pos.int())
        pos = merged > 0
    return variants, pos.reshape(pos.shape + (1,) * (act.dim() + 1 - pos.dim()))
