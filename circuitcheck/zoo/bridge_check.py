"""The bridge check: does the TransformerLens bridge compute what the Hugging Face model computes?

TransformerLens re-implements each architecture's forward from a config it maps itself; a config field it
does not read (GPT-2's ``scale_attn_weights: false``) yields a model that loads, runs, and is wrong by O(1)
in the logits. So every HF load runs one seeded probe batch through the bridge and through
``transformers``' own forward (eval mode, eager attention, same device and dtype) and compares the logits
within :data:`circuitcheck.zoo.options.LOGIT_TOLERANCE`.
"""

from __future__ import annotations

import gc
from pathlib import Path
from typing import Any

import torch

from circuitcheck.errors import ModelLoadError
from circuitcheck.zoo.options import LOGIT_TOLERANCE

PROBE_SEQS, PROBE_LEN, PROBE_SEED = 2, 8, 0
"""The probe batch: 2 sequences of 8 token ids, uniform over the vocabulary, seeded."""

TL_ASSUMES: dict[str, dict[str, Any]] = {
    "gpt2": {"scale_attn_weights": True, "scale_attn_by_inverse_layer_idx": False, "reorder_and_upcast_attn": False},
}
"""Per ``model_type``, HF config fields whose value TransformerLens's adapter assumes instead of reading (the
value is the one it assumes; ``transformers``' default). A config that sets another value is named in the
error when the probe disagrees: it is the likely cause."""

TRUST_FIX = (
    "results on this bridge would not describe the model; use a config TransformerLens supports, or pass "
    "--trust-bridge (check(trust_bridge=True)) to run anyway with the mismatch recorded in the report"
)


def unhonoured_fields(hf_config: dict[str, Any]) -> list[str]:
    """``field=value`` for each config field set to a value TransformerLens does not implement."""
    assumed = TL_ASSUMES.get(str(hf_config.get("model_type")), {})
    return [f"{k}={hf_config[k]!r}" for k, v in assumed.items() if k in hf_config and hf_config[k] != v]


def probe_tokens(d_vocab: int, n_ctx: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(PROBE_SEED)
    return torch.randint(0, d_vocab, (PROBE_SEQS, min(PROBE_LEN, n_ctx)), generator=gen)


def reference_logits(folder: Path, tokens: torch.Tensor, device: str, dtype: torch.dtype) -> torch.Tensor:
    """The model's own forward on ``tokens``; the reference model is freed before returning."""
    from transformers import AutoModelForCausalLM

    ref = AutoModelForCausalLM.from_pretrained(str(folder), dtype=dtype, attn_implementation="eager")
    try:
        ref.to(torch.device(device))  # type: ignore[arg-type]  # transformers' stubs type .to wrongly
        ref.train(False)
        with torch.no_grad():
            return ref(tokens.to(device)).logits.detach().float().cpu()
    finally:
        del ref
        gc.collect()
        if device.startswith("cuda"):
            torch.cuda.empty_cache()


def bridge_check(
    bridge: Any, folder: Path, hf_config: dict[str, Any], device: str, dtype: str, trust: bool
) -> dict[str, Any]:
    """The probe's record (``max_abs_diff``, ``tolerance``, ``passed``, ``trusted`` ...); raises
    :class:`ModelLoadError` on a mismatch unless ``trust``."""
    cfg = bridge.cfg
    tokens = probe_tokens(int(cfg.d_vocab), int(cfg.n_ctx))
    try:
        want = reference_logits(folder, tokens, device, getattr(torch, dtype))
    except Exception as err:  # noqa: BLE001 - whatever transformers cannot load, the bridge cannot be checked
        raise ModelLoadError(
            f"{folder}: cannot load the model with transformers to check the bridge against it: {err}\n"
            "  fix: make the folder loadable by transformers.AutoModelForCausalLM.from_pretrained"
        ) from None
    with torch.no_grad():
        got = bridge(tokens.to(device)).detach().float().cpu()
    scale = max(1.0, float(want.abs().max()))
    diff = float((got - want).abs().max())
    tolerance = LOGIT_TOLERANCE[dtype] * scale
    passed = bool(diff <= tolerance)  # a NaN difference fails
    suspects = unhonoured_fields(hf_config)
    record = {
        "probe": f"{PROBE_SEQS}x{tokens.shape[1]} random token ids, seed {PROBE_SEED}",
        "dtype": dtype, "device": device, "max_abs_diff": diff, "logit_scale": scale,
        "tolerance": tolerance, "passed": passed, "trusted": trust and not passed,
        "unhonoured_config": suspects,
    }
    if not passed and not trust:
        raise ModelLoadError(mismatch_message(folder, record))
    return record


def mismatch_message(folder: Path, record: dict[str, Any]) -> str:
    suspects = record["unhonoured_config"]
    why = (f"; config fields TransformerLens does not honour: {', '.join(suspects)}" if suspects
           else "; no config field known to be unsupported is set")
    return (
        f"{folder}: the TransformerLens bridge does not reproduce the model's own forward (transformers): "
        f"max |logit difference| {record['max_abs_diff']:.3g} > tolerance {record['tolerance']:.3g} "
        f"({LOGIT_TOLERANCE[record['dtype']]:g} x the largest |logit|, {record['dtype']}) on {record['probe']}{why}\n"
        f"  fix: {TRUST_FIX}"
    )
