"""Train the framework zoo model (seed 004: a one-layer attention-only transformer).

    python models/train_framework.py

No LayerNorm anywhere, so the logits are exactly the direct path W_E W_U plus one
path per head, as in the framework paper's analysis. The copy + bigram task
(circuitcheck.data.copy_bigram) gives each path something to carry.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from circuitcheck.data.copy_bigram import generate_copy_bigram
from circuitcheck.zoo.build import build_bridge

ZOO = Path(__file__).resolve().parent
TASK = {"kind": "copy_bigram", "d_vocab": 40, "seq_len": 24, "p_bigram": 0.35, "p_copy": 0.35}
CONFIG = {
    "n_layers": 1,
    "d_model": 64,
    "d_head": 32,
    "n_heads": 1,
    "d_vocab": TASK["d_vocab"],
    "n_ctx": TASK["seq_len"],
    "normalization_type": None,
    "attn_only": True,
    "final_norm": "none",
    "seed": 0,
}
STEPS, BATCH, LR, TRAIN_SEED, EVAL_SEED = 4000, 128, 3e-3, 1, 99


def evaluate(model: torch.nn.Module) -> dict[str, float]:
    batch = generate_copy_bigram(2000, TASK["seq_len"], TASK["d_vocab"], TASK["p_bigram"], TASK["p_copy"], EVAL_SEED)
    with torch.no_grad():
        logits = model(batch.tokens)[:, :-1]
    target = batch.tokens[:, 1:]
    probs = logits.softmax(-1).gather(-1, target[..., None]).squeeze(-1)
    roles = batch.roles[:, :-1]
    out = {"loss": float(F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1)))}
    for code, name in enumerate(("bigram", "copy", "random"), start=1):
        out[f"mean_p_correct_{name}"] = round(float(probs[roles == code].mean()), 4)
    return out


def main() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(TRAIN_SEED)
    model = build_bridge(CONFIG)
    opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=1e-3)
    t0 = time.time()
    for step in range(STEPS):
        for group in opt.param_groups:
            group["lr"] = LR * (1 - step / STEPS)
        toks = generate_copy_bigram(
            BATCH, TASK["seq_len"], TASK["d_vocab"], TASK["p_bigram"], TASK["p_copy"], TRAIN_SEED * 1_000_003 + step
        ).tokens
        logits = model(toks)
        loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), toks[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if (step + 1) % 1000 == 0:
            print(
                json.dumps({"step": step + 1, "loss": round(loss.item(), 4), "seconds": round(time.time() - t0, 1)}),
                flush=True,
            )
    out = ZOO / "framework-1l"
    out.mkdir(exist_ok=True)
    save_file(
        {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}, str(out / "model.safetensors")
    )
    card = {
        "name": "framework-1l",
        "format": "tl-native",
        "checkpoint": "model.safetensors",
        "config": CONFIG,
        "task": TASK,
        "training": {
            "script": "models/train_framework.py",
            "steps": STEPS,
            "batch": BATCH,
            "lr": LR,
            "lr_schedule": "linear decay",
            "weight_decay": 1e-3,
            "train_seed": TRAIN_SEED,
            "seconds": round(time.time() - t0, 1),
        },
        "evaluation": {"eval_seed": EVAL_SEED, "n_seqs": 2000} | evaluate(model),
    }
    (out / "card.json").write_text(json.dumps(card, indent=2) + "\n")
    print(json.dumps(card["evaluation"]))


if __name__ == "__main__":
    main()
