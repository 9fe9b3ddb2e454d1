"""Direct logit attribution: the clean logits split exactly into per-component terms.

The residual stream before the final norm is the sum of the component outputs
(embeddings, each head's ``z @ W_O``, the attention output biases, each MLP). With
the final LayerNorm's scale taken from the clean run, the norm is affine in its
input, so each component's contribution to every logit is
``((c - mean_d c) / scale) * w @ W_U``, and the norm's and unembedding's biases add
a constant. The terms sum to the clean logits; :func:`decompose` checks that they do.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from circuitcheck.errors import SelfCheckError
from circuitcheck.plan.components import available_hooks, model_components
from circuitcheck.spec.components import Embed, Head, Mlp, PosEmbed

if TYPE_CHECKING:  # torch is imported where a model is needed: `validate` loads this module without it
    import torch

SCALE_HOOK = "ln_final.hook_scale"
BIAS = "bias"
"""The pseudo-component holding every constant term (attention output biases, norm and unembedding biases)."""
RECONSTRUCTION_ATOL = 1e-3


def dla_captures(model: Any) -> set[str]:
    cfg = model.cfg
    hooks = {"hook_embed"} | {f"blocks.{layer}.attn.hook_z" for layer in range(cfg.n_layers)}
    if "hook_pos_embed" in available_hooks(model):
        hooks.add("hook_pos_embed")
    if not cfg.attn_only:
        hooks |= {f"blocks.{layer}.hook_mlp_out" for layer in range(cfg.n_layers)}
    if SCALE_HOOK in available_hooks(model):
        hooks.add(SCALE_HOOK)
    return hooks


def component_outputs(model: Any, cache: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Every component's write into the residual stream, ``[batch, seq, d_model]``, plus the bias."""
    outs: dict[str, torch.Tensor] = {}
    for component in model_components(model):
        name = str(component)
        if isinstance(component, Embed):
            outs[name] = cache["hook_embed"]
        elif isinstance(component, PosEmbed):
            outs[name] = cache["hook_pos_embed"]
        elif isinstance(component, Mlp):
            outs[name] = cache[f"blocks.{component.layer}.hook_mlp_out"]
        elif isinstance(component, Head):
            layer, head = component.layer, component.head
            outs[name] = cache[f"blocks.{layer}.attn.hook_z"][:, :, head] @ model.W_O[layer, head]
    outs[BIAS] = model.b_O.sum(0).expand_as(outs["embed"])
    return outs


def decompose(
    model: Any, cache: dict[str, torch.Tensor], clean_logits: torch.Tensor, center: bool = False
) -> dict[str, torch.Tensor]:
    """Per-component logit contributions ``[batch, seq, d_vocab_out]``; they sum to ``clean_logits``.

    ``center`` subtracts each component's mean output over the dataset (per position)
    before the norm, as seed 001 does, so that only what varies between examples is
    attributed; the terms then no longer sum to the logits and the constants drop out.
    """
    import torch

    with torch.no_grad():
        outs = component_outputs(model, cache)
        terms = _through_unembed(model, cache, outs)
        error = float((torch.stack(list(terms.values())).sum(0) - clean_logits).abs().max())
        if error > RECONSTRUCTION_ATOL * max(1.0, float(clean_logits.abs().max())):
            raise SelfCheckError(
                "direct logit attribution does not add up: the components' terms miss the clean logits by "
                f"{error:.2e}; "
                "this model has a component the decomposition does not know"
            )
        if not center:
            return terms
        centered = {k: v - v.mean(0, keepdim=True) for k, v in outs.items() if k != BIAS}
        return _through_unembed(model, cache, centered, constants=False)


def _through_unembed(
    model: Any, cache: dict[str, torch.Tensor], outs: dict[str, torch.Tensor], constants: bool = True
) -> dict[str, torch.Tensor]:
    if SCALE_HOOK in cache:
        scale = cache[SCALE_HOOK]
        terms = {k: ((v - v.mean(-1, keepdim=True)) / scale) * model.ln_final.w @ model.W_U for k, v in outs.items()}
        constant = model.ln_final.b @ model.W_U + model.b_U
    else:  # no final norm: the unembedding reads the residual stream directly
        terms = {k: v @ model.W_U for k, v in outs.items()}
        constant = model.b_U
    if constants:
        terms[BIAS] = terms[BIAS] + constant
    return terms


def at_label(terms: dict[str, torch.Tensor], labels: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """Each component's contribution to the correct label's logit at ``mask``'s positions (flattened)."""
    idx = labels.clamp(min=0)[..., None]
    return {k: v.gather(-1, idx).squeeze(-1)[mask] for k, v in terms.items()}
