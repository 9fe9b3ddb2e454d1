"""Named position selections resolved to boolean masks over ``[batch, seq]``.

Claim modules read :data:`ALL` when ``circuitcheck validate`` loads them, so torch is
imported inside the functions that build masks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from circuitcheck.data.batch import NO_TARGET, TokenBatch
from circuitcheck.errors import PlanError
from circuitcheck.spec.base import PositionSelection

if TYPE_CHECKING:
    import torch

ALL = "all"
"""The built-in selection every file has: every position."""


def selection_mask(sel: PositionSelection, batch: TokenBatch, path: tuple[str | int, ...]) -> torch.Tensor:
    import torch

    n, seq = batch.tokens.shape
    mask = torch.ones(n, seq, dtype=torch.bool)
    if sel.role is not None:
        is_list = isinstance(sel.role, list)
        union = torch.zeros(n, seq, dtype=torch.bool)
        for i, role in enumerate(sel.roles):
            if role not in batch.role_names[1:]:
                known = ", ".join(batch.role_names[1:])
                at = path + (("role", i) if is_list else ("role",))
                raise PlanError(at, f"this dataset annotates no role {role!r}", f"use one of: {known}")
            union |= batch.role_mask(role)
        mask &= union
    if sel.tokens is not None:
        mask &= holds_any(batch, sel.tokens, path + ("tokens",))
    if sel.prefix_contains is not None:
        mask &= holds_any(batch, sel.prefix_contains, path + ("prefix_contains",)).cummax(1).values
    if sel.prefix_lacks is not None:
        mask &= ~holds_any(batch, sel.prefix_lacks, path + ("prefix_lacks",)).cummax(1).values
    if sel.same_as_previous is not None:
        repeats = torch.zeros(n, seq, dtype=torch.bool)
        repeats[:, 1:] = batch.tokens[:, 1:] == batch.tokens[:, :-1]
        mask &= repeats if sel.same_as_previous else ~repeats
    if sel.range is not None:
        start, stop = sel.range
        lo, hi = (start + seq if start < 0 else start), (stop + seq if stop < 0 else stop)
        if not (0 <= lo < hi <= seq):
            raise PlanError(
                path + ("range",),
                f"range {list(sel.range)} is empty or outside 0..{seq}",
                f"use [start, stop) within [0, {seq}]",
            )
        in_range = torch.zeros(seq, dtype=torch.bool)
        in_range[lo:hi] = True
        mask &= in_range
    if sel.indices is not None:
        bad = [i for i in sel.indices if not -seq <= i < seq]
        if bad:
            raise PlanError(path + ("indices",), f"positions {bad} are outside a sequence of length {seq}")
        listed = torch.zeros(seq, dtype=torch.bool)
        listed[[i % seq for i in sel.indices]] = True
        mask &= listed
    return mask


def token_ids(batch: TokenBatch, tokens: list[int | str], path: tuple[str | int, ...]) -> list[int]:
    """Token names or ids as ids, refusing names the dataset does not know and ids out of range."""
    ids = []
    for i, token in enumerate(tokens):
        try:
            ids.append(batch.token_id(token))
        except KeyError as err:
            raise PlanError(
                path + (i,), str(err.args[0]), "use a token name from the dataset's vocabulary, or an id"
            ) from None
    return ids


def holds_any(batch: TokenBatch, tokens: list[int | str], path: tuple[str | int, ...]) -> torch.Tensor:
    """Positions whose token is one of ``tokens``."""
    import torch

    return torch.isin(batch.tokens, torch.tensor(token_ids(batch, tokens, path)))


def resolve_selections(selections: dict[str, PositionSelection], batch: TokenBatch) -> dict[str, torch.Tensor]:
    import torch

    masks = {ALL: torch.ones(batch.tokens.shape, dtype=torch.bool)}
    for name, sel in selections.items():
        if name == ALL:
            raise PlanError(("positions", name), "'all' is built in", "rename this selection")
        mask = selection_mask(sel, batch, ("positions", name))
        if not mask.any():
            raise PlanError(
                ("positions", name),
                f"selection {name!r} matches no position in the dataset",
                "check the role/range, or use more sequences",
            )
        masks[name] = mask
    return masks


def scored_mask(
    masks: dict[str, torch.Tensor], name: str, batch: TokenBatch, path: tuple[str | int, ...]
) -> torch.Tensor:
    """A selection restricted to positions that have a next token to score."""
    if name not in masks:
        known = ", ".join(sorted(masks))
        raise PlanError(path, f"unknown position selection {name!r}", f"define it under 'positions:' (known: {known})")
    mask = masks[name] & (batch.next_token != NO_TARGET)
    if not mask.any():
        raise PlanError(path, f"selection {name!r} has no position with a next token")
    return mask
