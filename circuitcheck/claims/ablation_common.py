"""Pieces shared by the claim kinds that ablate components."""

from __future__ import annotations

from typing import Literal

from circuitcheck.claims.base import CompileContext
from circuitcheck.errors import PlanError
from circuitcheck.plan.components import HookSite
from circuitcheck.plan.interventions import HookEdit

AblationMethod = Literal["zero", "mean", "resample"]


def ablation_edits(
    ctx: CompileContext,
    sites: list[HookSite],
    method: AblationMethod,
    at: str,
    resample_seed: int | None,
) -> tuple[HookEdit, ...]:
    if method == "resample":
        if resample_seed is None:
            raise PlanError(ctx.path + ("method",), "resample ablation needs a seed", "add 'resample_seed: <int>'")
        if ctx.batch.n_seqs < 2:
            raise PlanError(ctx.path + ("method",), "resample ablation needs at least 2 sequences")
    elif resample_seed is not None:
        raise PlanError(
            ctx.path + ("resample_seed",),
            f"resample_seed only applies to method 'resample', not {method!r}",
            "remove resample_seed",
        )
    seed = resample_seed if method == "resample" else None
    return tuple(HookEdit(site, at, method, seed) for site in sites)
