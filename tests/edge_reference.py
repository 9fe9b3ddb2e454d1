"""The naive edge-level reference: one circuit, one unstacked pass, one hook per receiver input.

Written independently of :mod:`circuitcheck.run.edges`: sender outputs kept by name, each receiver's
input summed by hand in a Python loop over senders, its own layer order, and torch's LayerNorm on the
native modules. ``tests/test_edges.py`` checks the engine against it; ``benchmarks/`` times it.

Parallel blocks (``cfg.parallel_attn_mlp``: GPT-NeoX/Pythia, GPT-J) compute the MLP from ``ln2`` of the
block's input, beside attention: there mlpL reads no head of layer L, nor its ``b_O``, and its input is
replaced at ``ln2.hook_in`` (these models have no ``hook_resid_mid``). Models with rotary positions have
no ``pos_embed`` sender.
"""

from __future__ import annotations

import torch

from circuitcheck.run.engine import derangement

__all__ = ["naive_ablated", "naive_circuit"]

RESAMPLE_SEED = 3
"""The seed of the reference's resample derangement (the engine's ``EdgeAblation(seed=...)`` must match)."""


def _parallel(model) -> bool:
    return bool(getattr(model.cfg, "parallel_attn_mlp", False))


def _has_pos_embed(model) -> bool:
    return model.cfg.positional_embedding_type in ("standard", "shortformer")


def _names(model) -> list[str]:
    """Sender names in forward order, written out by hand."""
    names = ["embed", "pos_embed"] if _has_pos_embed(model) else ["embed"]
    for layer in range(model.cfg.n_layers):
        names += [f"{layer}.{h}" for h in range(model.cfg.n_heads)]
        if not model.cfg.attn_only:
            names.append(f"mlp{layer}")
    return names


def _reads(sender: str, receiver: str, parallel: bool) -> bool:
    """Whether ``receiver`` ('L.H.x', 'mlpL', 'logits') reads ``sender``, from the layer rule."""
    if receiver == "logits" or sender in ("embed", "pos_embed"):
        return True
    s_layer = int(sender[3:]) if sender.startswith("mlp") else int(sender.split(".")[0])
    if receiver.startswith("mlp"):
        r_layer = int(receiver[3:])
        same_layer_head = s_layer == r_layer and not sender.startswith("mlp") and not parallel
        return s_layer < r_layer or same_layer_head
    return s_layer < int(receiver.split(".")[0])


def _outputs(model, cache: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Each sender's output [n, seq, d] from a cache."""
    out = {"embed": cache["hook_embed"]}
    if _has_pos_embed(model):
        out["pos_embed"] = cache["hook_pos_embed"].expand_as(cache["hook_embed"])
    for layer in range(model.cfg.n_layers):
        for h in range(model.cfg.n_heads):
            out[f"{layer}.{h}"] = cache[f"blocks.{layer}.attn.hook_z"][:, :, h] @ model.W_O[layer, h]
        if not model.cfg.attn_only:
            out[f"mlp{layer}"] = cache[f"blocks.{layer}.hook_mlp_out"]
    return out


def _run_cache(model, tokens):
    with torch.no_grad():
        return model.run_with_cache(tokens)[1]


def naive_ablated(model, tokens, method: str, corrupted: torch.Tensor) -> dict[str, torch.Tensor]:
    clean = _outputs(model, _run_cache(model, tokens))
    if method == "zero":
        return {k: torch.zeros_like(v) for k, v in clean.items()}
    if method == "mean":
        return {k: v.mean(0, keepdim=True).expand_as(v) for k, v in clean.items()}
    if method == "resample":
        perm = derangement(len(tokens), RESAMPLE_SEED)
        return {k: v[perm] for k, v in clean.items()}
    return _outputs(model, _run_cache(model, corrupted))


def naive_circuit(model, tokens, edges: set[str], ablated: dict[str, torch.Tensor]) -> torch.Tensor:
    """One circuit, one pass: every receiver input rebuilt from its senders in a loop."""
    names = _names(model)
    parallel = _parallel(model)
    current: dict[str, torch.Tensor] = {}
    fired: dict[str, int] = {}

    def input_of(receiver: str, bias_layers: int) -> torch.Tensor:
        total = sum(model.b_O[layer] for layer in range(bias_layers)) if bias_layers else 0.0
        for s in names:
            if _reads(s, receiver, parallel):
                total = total + (current[s] if f"{s} -> {receiver}" in edges else ablated[s])
        return total

    def keep(name, fn):
        def hook(act, hook):
            fired[name] = fired.get(name, 0) + 1
            return fn(act)

        return (name, hook)

    def save_embed(key):
        def fn(act):
            current[key] = act.expand(len(tokens), *act.shape[-2:])

        return fn

    def save_z(layer):
        def fn(act):
            for h in range(model.cfg.n_heads):
                current[f"{layer}.{h}"] = act[:, :, h] @ model.W_O[layer, h]

        return fn

    def save_mlp(layer):
        def fn(act):
            current[f"mlp{layer}"] = act

        return fn

    def qkv(layer, which):
        ln = model.blocks[layer].ln1.original_component
        w, b = getattr(model, f"W_{which.upper()}")[layer], getattr(model, f"b_{which.upper()}")[layer]

        def fn(act):
            out = torch.empty_like(act)
            for h in range(model.cfg.n_heads):
                x = input_of(f"{layer}.{h}.{which}", layer)
                out[:, :, h] = ln(x) @ w[h] + b[h]
            return out

        return fn

    def mlp_in(layer):
        return lambda act: input_of(f"mlp{layer}", layer if parallel else layer + 1)

    hooks = [keep("hook_embed", save_embed("embed"))]
    if "pos_embed" in names:
        hooks.append(keep("hook_pos_embed", save_embed("pos_embed")))
    for layer in range(model.cfg.n_layers):
        hooks.append(keep(f"blocks.{layer}.attn.hook_z", save_z(layer)))
        hooks += [keep(f"blocks.{layer}.attn.hook_{w}", qkv(layer, w)) for w in "qkv"]
        if not model.cfg.attn_only:
            hooks.append(keep(f"blocks.{layer}.hook_mlp_out", save_mlp(layer)))
            mlp_input = f"blocks.{layer}.ln2.hook_in" if parallel else f"blocks.{layer}.hook_resid_mid"
            hooks.append(keep(mlp_input, mlp_in(layer)))
    hooks.append(keep("ln_final.hook_in", lambda act: input_of("logits", model.cfg.n_layers)))
    with torch.no_grad():
        logits = model.run_with_hooks(tokens, fwd_hooks=hooks)
    assert sorted(fired) == sorted(name for name, _ in hooks), "every naive hook fired"
    return logits
