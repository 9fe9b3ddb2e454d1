"""The vacuity lint on the model and its data: claims whose intervention provably cannot reach the metric.

:mod:`circuitcheck.spec.vacuity` checks what a file says; this checks what its interventions can do on the
model they compile against, before any forward pass. An edit at a component and positions changes the
logits only through the model's paths: a head at position p reads the residual stream at positions <= p,
an MLP and the unembedding read position p, the residual stream adds them up. :func:`reach` follows those
paths from the positions an intervention changes, exactly (as boolean masks over the dataset), through the
activations it restores to their clean values. Rules, each refused unless the claim sets
``allow_vacuous: true`` with a ``vacuous_reason``:

``keeps-everything``
    Sufficiency: nothing ablated outside the circuit reaches a scored position, so the circuit run is the
    model there and retains all of the effect. Preservation and faithfulness: the circuit removes no edge
    (or only ``pos_embed`` edges under mean or resample ablation, which change nothing).
``ablates-nothing``
    Necessity: nothing ablated reaches a scored position (positions after every scored one; mean or
    resample ablation of ``pos_embed``, or of anything at positions whose prefix is the same in every
    sequence, which leaves the values as they are), so the drop is 0 whatever the model does.
``patches-every-path``
    Activation patching: the patched activations cut every path from the corrupted tokens to the scored
    positions (on a 1-layer, 1-head model, patching that head at the scored positions is one), so the
    patched run is the clean run there and the fraction recovered is 1 whatever the model does.

What cannot be placed on the paths (a hook inside a head, ``hook_pattern``, ``hook_v``, LayerNorm hooks) is
never taken to cut one, and an ablation there is never taken to change nothing: the lint errs towards
letting a claim through. It reads the spec fields of the kinds it knows by their ``kind`` tag: plan/ sits
below the claim kinds and imports none of them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from circuitcheck.errors import PlanError
from circuitcheck.plan.components import HookSite, complement, model_components, resolve_components
from circuitcheck.plan.context import CompileContext
from circuitcheck.spec.components import PosEmbed
from circuitcheck.spec.vacuity import VacuityError

if TYPE_CHECKING:
    import torch

Node = tuple[str, ...] | tuple[str, int] | tuple[str, int, int]
"""``("embed",)``, ``("pos",)``, ``("resid_pre", L)``, ``("head", L, h)``, ``("resid_mid", L)``, ``("mlp", L)``,
``("resid_post", L)``."""

_RESID = re.compile(r"blocks\.([0-9]+)\.hook_(resid_pre|resid_mid|resid_post)")
_HEADS = re.compile(r"blocks\.([0-9]+)\.(attn\.hook_z|attn\.hook_result|hook_attn_out)")
_MLP = re.compile(r"blocks\.([0-9]+)\.(hook_mlp_out|mlp\.hook_post|mlp\.hook_pre)")


def nodes_of(site: HookSite, n_heads: int) -> list[Node] | None:
    """The path nodes a hook site's whole value stands for; None for a site inside a computation."""
    if site.hook == "hook_embed":
        return [("embed",)]
    if site.hook == "hook_pos_embed":
        return [("pos",)]
    if m := _RESID.fullmatch(site.hook):
        return [(m.group(2), int(m.group(1)))]
    if m := _HEADS.fullmatch(site.hook):
        layer = int(m.group(1))
        heads = [site.head] if site.head is not None and m.group(2) != "hook_attn_out" else range(n_heads)
        return [("head", layer, h) for h in heads]
    if m := _MLP.fullmatch(site.hook):
        return [("mlp", int(m.group(1)))]
    return None


def reach(model: Any, shape: tuple[int, int], changed: dict[Node, torch.Tensor],
          restored: dict[Node, torch.Tensor]) -> torch.Tensor:
    """``[n_seqs, seq]``: the positions whose logits can differ from the clean run's when the nodes of
    ``changed`` change at their masks' positions and those of ``restored`` keep their clean values at theirs."""
    import torch

    cfg = model.cfg
    none = torch.zeros(shape, dtype=torch.bool)

    def at(node: Node, value: torch.Tensor) -> torch.Tensor:
        if node in changed:
            value = value | changed[node]
        return value & ~restored[node] if node in restored else value

    resid = at(("embed",), none) | at(("pos",), none)
    for layer in range(int(cfg.n_layers)):
        resid = at(("resid_pre", layer), resid)
        seen = resid.cummax(dim=1).values  # a head at p reads every position <= p
        for h in range(int(cfg.n_heads)):
            resid = resid | at(("head", layer, h), seen)
        resid = at(("resid_mid", layer), resid)
        if not cfg.attn_only:
            resid = resid | at(("mlp", layer), resid)
        resid = at(("resid_post", layer), resid)
    return resid


def _same_everywhere(ctx: CompileContext) -> torch.Tensor:
    """``[seq]``: positions whose prefix (itself included) holds the same tokens in every sequence; there every
    activation is the same in every sequence, so a mean or resample ablation leaves it as it is."""
    tokens = ctx.batch.tokens
    return ~(tokens != tokens[:1]).any(0).cummax(0).values


def _ablated(ctx: CompileContext, sites: list[HookSite], method: str, where: torch.Tensor,
             ) -> dict[Node, torch.Tensor] | None:
    """What an ablation of ``sites`` at ``where`` changes, by node; None if a site is off the paths."""
    changed: dict[Node, torch.Tensor] = {}
    if method != "zero":
        where = where & ~_same_everywhere(ctx)
    for site in sites:
        nodes = nodes_of(site, int(ctx.model.cfg.n_heads))
        if nodes is None:
            return None
        for node in nodes:
            if node == ("pos",) and method != "zero":
                continue  # the same in every sequence: its mean, or another sequence's, is itself
            changed[node] = changed[node] | where if node in changed else where
    return changed


def _restored(ctx: CompileContext, sites: list[HookSite], where: torch.Tensor) -> dict[Node, torch.Tensor]:
    restored: dict[Node, torch.Tensor] = {}
    for site in sites:
        for node in nodes_of(site, int(ctx.model.cfg.n_heads)) or []:  # a site off the paths cuts none
            restored[node] = restored[node] | where if node in restored else where
    return restored


def _shape(ctx: CompileContext) -> tuple[int, int]:
    return (int(ctx.batch.tokens.shape[0]), int(ctx.batch.tokens.shape[1]))


def _ablation(claim: Any, ctx: CompileContext) -> VacuityError | None:
    scored = ctx.scored(claim.positions)
    where = ctx.masks[ctx.selection(claim.ablate_at, "ablate_at")]
    sites = resolve_components(ctx.model, claim.components, ctx.path + ("components",))
    listed = ", ".join(map(str, claim.components))
    if claim.mode == "necessity":
        changed = _ablated(ctx, sites, claim.method, where)
        if changed is None or (reach(ctx.model, _shape(ctx), changed, {}) & scored).any():
            return None
        unchanged = not any(bool(m.any()) for m in changed.values())
        why = (
            f"its {claim.method} values are its own values (pos_embed, and everything at positions whose prefix is "
            "the same in every sequence, is the same in every sequence)" if unchanged
            else f"what changes at '{claim.ablate_at}' reaches no scored position (a position reads only positions "
            "at or before it, through the heads of later layers)"
        )
        return VacuityError(
            "ablates-nothing", ctx.path + ("components",),
            f"{claim.method}-ablating {listed} at '{claim.ablate_at}' changes nothing the scored positions "
            f"'{claim.positions}' read: {why}; so the drop is 0 whatever the model does",
            f"ablate what reaches '{claim.positions}' (components; positions with 'ablate_at'), or use method: zero",
        )
    rest = complement(ctx.model, sites)
    changed = _ablated(ctx, rest, claim.method, where)
    if changed is None or (reach(ctx.model, _shape(ctx), changed, {}) & scored).any():
        return None
    every = ", ".join(map(str, model_components(ctx.model)))
    return VacuityError(
        "keeps-everything", ctx.path + ("components",),
        f"keeping only {listed} ablates nothing that reaches the scored positions '{claim.positions}' (the model's "
        f"components: {every}; ablated: {', '.join(map(str, rest)) or 'none'} at '{claim.ablate_at}', "
        f"{claim.method}): the circuit run is the model there, so it retains all of the effect whatever the "
        "model does",
        "name the circuit you claim is sufficient, a strict subset of the components that the rest can reach past",
    )


def _patching(claim: Any, ctx: CompileContext) -> VacuityError | None:
    scored = ctx.scored(claim.positions)
    corrupted = claim.corruption.changed(ctx, "corruption")  # a claims.corruption scheme: the positions it changes
    changed: dict[Node, torch.Tensor] = {("embed",): corrupted}
    reached = reach(ctx.model, _shape(ctx), changed, {}) & scored
    if not reached.any():
        return None  # the corruption changes nothing there: the estimate is undefined, and the verdict says so
    at = ctx.masks[ctx.selection(claim.patch_at, "patch_at")]
    sites = resolve_components(ctx.model, claim.patch, ctx.path + ("patch",))
    if (reach(ctx.model, _shape(ctx), changed, _restored(ctx, sites, at)) & scored).any():
        return None
    return VacuityError(
        "patches-every-path", ctx.path + ("patch",),
        f"patching {', '.join(map(str, claim.patch))} at '{claim.patch_at}' restores every path from the corrupted "
        f"tokens at {claim.corruption.where} to the scored positions '{claim.positions}' (all "
        f"{int(reached.sum())} positions the corruption reaches): the patched run is the clean run there, so the "
        "fraction recovered is 1 whatever the model does",
        "patch part of the path: e.g. only where the head looks (blocks.L.attn.hook_pattern) or only what it reads "
        "(blocks.L.attn.hook_v at the corrupted positions), or a component that not every path goes through",
    )


def _circuit(claim: Any, ctx: CompileContext) -> VacuityError | None:
    circuit = ctx.circuit(claim.circuit)
    unchanged = claim.ablation != "zero" and all(isinstance(e.sender, PosEmbed) for e in circuit.removed)
    if circuit.removed and not unchanged:
        return None
    why = (
        "removes no edge" if not circuit.removed
        else f"removes only pos_embed edges, which {claim.ablation} ablation leaves as they are"
    )
    return VacuityError(
        "keeps-everything", ctx.path + ("circuit",),
        f"circuit {claim.circuit!r} {why} ({len(circuit.edges)} of the model's {circuit.n_model_edges} edges kept): "
        f"the {claim.kind} claim compares the model with itself",
        "name a circuit that leaves out edges the metric depends on",
    )


RULES: dict[str, Callable[[Any, CompileContext], VacuityError | None]] = {
    "ablation": _ablation,
    "activation_patching": _patching,
    "preservation": _circuit,
    "faithfulness": _circuit,
}
"""The kinds this lint reads, by ``kind`` tag."""


def check_vacuity(claim: Any, ctx: CompileContext) -> None:
    """Raise a :class:`PlanError` naming the rule when ``claim`` cannot fail on this model and data (unless it
    sets ``allow_vacuous``). Call it after the claim compiled: it reuses the names that compile checked."""
    rule = RULES.get(str(getattr(claim, "kind", "")))
    if rule is None or getattr(claim, "allow_vacuous", False):
        return
    problem = rule(claim, ctx)
    if problem is not None:
        message, fix = problem.texts()
        raise PlanError(problem.path, message, fix)
