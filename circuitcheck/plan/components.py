"""Components, parsed when the file loads (:mod:`circuitcheck.spec.components`), resolved to hook sites
on a concrete model.

``embed``, ``pos_embed``, ``L.H`` (head H of layer L), ``attnL`` (every head of
layer L), ``mlpL``, or a raw hook name such as ``blocks.0.hook_resid_mid``.
"""

from __future__ import annotations

import difflib
import weakref
from dataclasses import dataclass
from typing import Any

from circuitcheck.errors import PlanError
from circuitcheck.spec.components import Attn, Component, Embed, Head, Hook, Mlp, PosEmbed


@dataclass(frozen=True, order=True)
class HookSite:
    """One hook, optionally one head's slice of it (``hook_z`` is ``[b, s, head, d]``)."""

    hook: str
    head: int | None = None

    def __str__(self) -> str:
        return self.hook if self.head is None else f"{self.hook}[head {self.head}]"


def model_components(model: Any) -> list[Component]:
    """Every component a model has, in forward order (``str`` gives each one's name)."""
    cfg = model.cfg
    found: list[Component] = [Embed()]
    if has_pos_embed(model):
        found.append(PosEmbed())
    for layer in range(cfg.n_layers):
        found += [Head(layer, h) for h in range(cfg.n_heads)]
        if not cfg.attn_only:
            found.append(Mlp(layer))
    return found


def has_pos_embed(model: Any) -> bool:
    """Whether the model adds a learned positional embedding. Not ``"hook_pos_embed" in model.hook_dict``: a
    rotary bridge (GPT-NeoX) lists that hook and never fires it; its config says ``rotary``."""
    kind = getattr(model.cfg, "positional_embedding_type", "standard")
    return kind in ("standard", "shortformer") and "hook_pos_embed" in model.hook_dict


_HOOKS: weakref.WeakKeyDictionary[Any, tuple[str, ...]] = weakref.WeakKeyDictionary()


def available_hooks(model: Any) -> tuple[str, ...]:
    """Hook names that fire in a forward pass, in forward order.

    ``hook_dict`` also lists hooks TL disables by default (``hook_mlp_in`` ...), which
    cannot be attached; one probe pass on a 2-token input finds the ones that work.
    """
    if model not in _HOOKS:
        import torch

        with torch.no_grad():
            device = next(model.parameters()).device  # the model's, which need not be the CPU (--device)
            _, cache = model.run_with_cache(torch.zeros(1, 2, dtype=torch.long, device=device))
        _HOOKS[model] = tuple(cache.keys())
    return _HOOKS[model]


def check_hook_name(model: Any, name: str, path: tuple[str | int, ...]) -> str:
    hooks = available_hooks(model)
    if name in hooks:
        return name
    if name in model.hook_dict:
        raise PlanError(
            path,
            f"hook {name!r} exists but is disabled in this model and never fires",
            "use another hook; `circuitcheck explain --hooks` lists the usable ones",
        )
    guess = difflib.get_close_matches(name, list(hooks), n=1, cutoff=0.6)
    fix = f"did you mean {guess[0]!r}?" if guess else "run `circuitcheck explain` to list hook names"
    raise PlanError(path, f"unknown hook {name!r}", fix)


def resolve_component(model: Any, component: Component, path: tuple[str | int, ...]) -> list[HookSite]:
    """The hook sites whose outputs make up ``component``, checked against the model."""
    cfg = model.cfg
    if isinstance(component, Embed):
        return [HookSite("hook_embed")]
    if isinstance(component, PosEmbed):
        return [HookSite(check_hook_name(model, "hook_pos_embed", path))]
    if isinstance(component, Hook):
        return [HookSite(check_hook_name(model, component.name, path))]
    layer = component.layer
    if layer >= cfg.n_layers:
        raise PlanError(
            path,
            f"layer {layer} is out of range: the model has {cfg.n_layers} layer(s)",
            f"use a layer in 0..{cfg.n_layers - 1}",
        )
    z = f"blocks.{layer}.attn.hook_z"
    if isinstance(component, Head):
        if component.head >= cfg.n_heads:
            raise PlanError(
                path,
                f"head {component.head} is out of range: layer {layer} has {cfg.n_heads} head(s)",
                f"use a head in 0..{cfg.n_heads - 1}",
            )
        return [HookSite(z, component.head)]
    if isinstance(component, Attn):
        return [HookSite(z, h) for h in range(cfg.n_heads)]
    if cfg.attn_only:
        raise PlanError(
            path, f"the model is attention-only: it has no {str(component)!r}", "drop the MLP from this claim"
        )
    return [HookSite(f"blocks.{layer}.hook_mlp_out")]


def resolve_components(model: Any, components: list[Component], path: tuple[str | int, ...]) -> list[HookSite]:
    sites: list[HookSite] = []
    for i, component in enumerate(components):
        for site in resolve_component(model, component, path + (i,)):
            if site not in sites:
                sites.append(site)
    return sites


def complement(model: Any, keep: list[HookSite]) -> list[HookSite]:
    """Every component site not in ``keep`` (for "keep only the circuit" ablations)."""
    everything = resolve_components(model, model_components(model), ())
    kept = set(keep)
    return [s for s in everything if s not in kept]
