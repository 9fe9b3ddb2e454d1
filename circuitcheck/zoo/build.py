"""Build a TransformerBridge around a TL-native model from a plain config dict."""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

CONFIG_KEYS = {
    "n_layers",
    "d_model",
    "d_head",
    "n_heads",
    "d_mlp",
    "d_vocab",
    "d_vocab_out",
    "n_ctx",
    "act_fn",
    "normalization_type",
    "attn_only",
    "attention_dir",
    "positional_embedding_type",
    "seed",
    "eps",
}
"""TransformerBridgeConfig fields a zoo config may set; anything else is a typo."""

FINAL_NORMS = ("same", "none")
"""``same``: TL's default final norm of the block-norm type. ``none``: identity, as
in the seed trigram model, which TL 4's native model cannot express directly."""


def bridge_config(config: dict[str, Any]) -> Any:
    from transformer_lens.config import TransformerBridgeConfig

    unknown = sorted(set(config) - CONFIG_KEYS - {"final_norm"})
    if unknown:
        raise ValueError(
            f"unknown model config keys {unknown}; allowed: {sorted(CONFIG_KEYS | {'final_norm'})}"
        )
    fields = {k: v for k, v in config.items() if k in CONFIG_KEYS}
    return TransformerBridgeConfig(**fields)


def build_bridge(config: dict[str, Any]) -> Any:
    """A randomly initialised bridge for ``config``; load weights afterwards.

    ``config["final_norm"] == "none"`` swaps the final norm for an identity
    before the bridge wraps the model, and maps the bridge's ``ln_final`` slot
    to a pass-through component, so ``ln_final.hook_in``/``hook_out`` still
    exist and fire but normalise nothing.
    """
    from transformer_lens.model_bridge.generalized_components.base import (
        GeneralizedComponent,
    )
    from transformer_lens.model_bridge.sources._bridge_builder import (
        build_bridge_from_module,
    )
    from transformer_lens.model_bridge.sources.native import (
        NativeModel,
        initialize_native_model,
    )

    final_norm = config.get("final_norm", "same")
    if final_norm not in FINAL_NORMS:
        raise ValueError(f"final_norm must be one of {FINAL_NORMS}, got {final_norm!r}")
    cfg = copy.deepcopy(bridge_config(config))
    with torch.random.fork_rng(devices=[]):
        if cfg.seed is not None:
            torch.manual_seed(cfg.seed)
        model = NativeModel(cfg)
        initialize_native_model(model, cfg)
    post_adapter_hook = None
    if final_norm == "none":
        model.ln_out = nn.Identity()

        def post_adapter_hook(adapter: Any) -> None:
            adapter.component_mapping["ln_final"] = GeneralizedComponent(
                name="ln_out", config=adapter.cfg
            )

    return build_bridge_from_module(
        model,
        architecture="TransformerLensNative",
        tl_config=cfg,
        model_name=str(config.get("name", "native")),
        post_adapter_hook=post_adapter_hook,
    )


def frozen(model: Any) -> Any:
    """``model`` in inference mode (no dropout) with no gradients: how every loaded model is run. Returns it."""
    model.train(False)  # not Python's eval: the name reads as a security hazard
    for param in model.parameters():
        param.requires_grad_(False)
    return model
