"""Component names in hypothesis files, resolved to hook sites on a concrete model.

``embed``, ``pos_embed``, ``L.H`` (head H of layer L), ``attnL`` (every head of
layer L), ``mlpL``, or a raw hook name such as ``blocks.0.hook_resid_mid``.
"""

from __future__ import annotations

import difflib
import re
import weakref
from dataclasses import dataclass
from typing import Any

from circuitcheck.errors import PlanError

_HEAD = re.compile(r"^(\d+)\.(\d+)$")
_LAYER = re.compile(r"^(attn|mlp)(\d+)$")


@dataclass(frozen=True, order=True)
class HookSite:
    """One hook, optionally one head's slice of it (``hook_z`` is ``[b, s, head, d]``)."""

    hook: str
    head: int | None = None

    def __str__(self) -> str:
        return self.hook if self.head is None else f"{self.hook}[head {self.head}]"


def model_components(model: Any) -> list[str]:
    """Every component name a model has, in forward order."""
    cfg = model.cfg
    names = ["embed"]
    if "hook_pos_embed" in model.hook_dict:
        names.append("pos_embed")
    for layer in range(cfg.n_layers):
        names += [f"{layer}.{h}" for h in range(cfg.n_heads)]
        if not cfg.attn_only:
            names.append(f"mlp{layer}")
    return names


_HOOKS: weakref.WeakKeyDictionary[Any, tuple[str, ...]] = weakref.WeakKeyDictionary()


def available_hooks(model: Any) -> tuple[str, ...]:
    """Hook names that fire in a forward pass, in forward order.

    ``hook_dict`` also lists hooks TL disables by default (``hook_mlp_in`` ...), which
    cannot be attached; one probe pass on a 2-token input finds the ones that work.
    """
    if model not in _HOOKS:
        import torch

        with torch.no_grad():
            _, cache = model.run_with_cache(torch.zeros(1, 2, dtype=torch.long))
        _HOOKS[model] = tuple(cache.keys())
    return _HOOKS[model]


def check_hook_name(model: Any, name: str, path: tuple[str | int, ...]) -> str:
    hooks = available_hooks(model)
    if name in hooks:
        return name
    if name in model.hook_dict:
        raise PlanError(path, f"hook {name!r} exists but is disabled in this model and never fires", "use another hook; `circuitcheck explain --hooks` lists the usable ones")
    guess = difflib.get_close_matches(name, list(hooks), n=1, cutoff=0.6)
    fix = f"did you mean {guess[0]!r}?" if guess else "run `circuitcheck explain` to list hook names"
    raise PlanError(path, f"unknown hook {name!r}", fix)


def resolve_component(model: Any, name: str, path: tuple[str | int, ...]) -> list[HookSite]:
    """The hook sites whose outputs make up component ``name``."""
    cfg = model.cfg
    if name == "embed":
        return [HookSite("hook_embed")]
    if name == "pos_embed":
        return [HookSite(check_hook_name(model, "hook_pos_embed", path))]
    if "hook" in name:
        return [HookSite(check_hook_name(model, name, path))]
    head = _HEAD.match(name)
    layer_match = _LAYER.match(name)
    layer = int(head.group(1)) if head else int(layer_match.group(2)) if layer_match else None
    if layer is None:
        guess = difflib.get_close_matches(name, model_components(model), n=1)
        fix = f"did you mean {guess[0]!r}?" if guess else "use embed, pos_embed, L.H, attnL, mlpL or a hook name"
        raise PlanError(path, f"unknown component {name!r}", fix)
    if layer >= cfg.n_layers:
        raise PlanError(path, f"layer {layer} is out of range: the model has {cfg.n_layers} layer(s)", f"use a layer in 0..{cfg.n_layers - 1}")
    z = f"blocks.{layer}.attn.hook_z"
    if head:
        h = int(head.group(2))
        if h >= cfg.n_heads:
            raise PlanError(path, f"head {h} is out of range: layer {layer} has {cfg.n_heads} head(s)", f"use a head in 0..{cfg.n_heads - 1}")
        return [HookSite(z, h)]
    if layer_match and layer_match.group(1) == "attn":
        return [HookSite(z, h) for h in range(cfg.n_heads)]
    if cfg.attn_only:
        raise PlanError(path, f"the model is attention-only: it has no {name!r}", "drop the MLP from this claim")
    return [HookSite(f"blocks.{layer}.hook_mlp_out")]


def resolve_components(model: Any, names: list[str], path: tuple[str | int, ...]) -> list[HookSite]:
    sites: list[HookSite] = []
    for i, name in enumerate(names):
        for site in resolve_component(model, name, path + (i,)):
            if site not in sites:
                sites.append(site)
    return sites


def complement(model: Any, keep: list[HookSite]) -> list[HookSite]:
    """Every component site not in ``keep`` (for "keep only the circuit" ablations)."""
    everything = resolve_components(model, model_components(model), ())
    kept = set(keep)
    return [s for s in everything if s not in kept]
