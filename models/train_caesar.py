"""Train a zoo Caesar-cipher model (seed 001) and write its checkpoint and card.

    python models/train_caesar.py --name caesar-easy --mode easy
    python models/train_caesar.py --name caesar-medium --mode medium
    python models/train_caesar.py --name caesar-easy --eval-only   # re-measure the card's figures

Trains once; tests and hypothesis runs only load the committed checkpoint.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from circuitcheck.data.caesar import WORDS, generate_caesar_batch, mode_weights
from circuitcheck.zoo.build import build_bridge

ZOO = Path(__file__).resolve().parent
SEQ_LEN = 32
EVAL_SEED = 12345
EVAL_SEQS = 1000
TRAIN_SEED_BASE = 10_000_000
"""Training batch ``i`` uses seed ``TRAIN_SEED_BASE + i``: far from evaluation and hypothesis-file seeds."""


def model_config() -> dict[str, object]:
    return {
        "n_layers": 2,
        "d_model": 48,
        "d_head": 24,
        "n_heads": 2,
        "d_vocab": 27,
        "d_vocab_out": 26,
        "n_ctx": SEQ_LEN,
        "normalization_type": "LN",
        "attn_only": True,
        "final_norm": "same",
        "seed": 0,
    }


def task_block(mode: str) -> dict[str, object]:
    return {
        "kind": "caesar",
        "mode": mode,
        "seq_len": SEQ_LEN,
        "d_vocab": 27,
        "n_rotations": 26,
        "words": list(WORDS),
        "weights": list(mode_weights(mode, len(WORDS))),
        "weights_rule": "easy: weight of rank k proportional to 1/k; medium: uniform",
    }


def evaluate(model: Any, mode: str, n_seqs: int = EVAL_SEQS, seed: int = EVAL_SEED) -> dict[str, float]:
    """Probability on the correct rotation over every position of ``n_seqs`` fresh sequences."""
    batch = generate_caesar_batch(n_seqs, SEQ_LEN, mode, seed)
    with torch.no_grad():
        logits = model(batch.tokens).float()
    logprobs = logits.log_softmax(-1)
    correct = logprobs.gather(-1, batch.next_token[..., None]).squeeze(-1)
    probs = correct.exp()
    return {
        "loss": round(-correct.mean().item(), 4),
        "mean_prob": round(probs.mean().item(), 4),
        "median_prob": round(probs.median().item(), 4),
        "min_prob": round(probs.min().item(), 6),
        "accuracy": round((logits.argmax(-1) == batch.next_token).float().mean().item(), 4),
        "mean_prob_at_position_0": round(probs[:, 0].mean().item(), 4),
        "mean_prob_from_position_8": round(probs[:, 8:].mean().item(), 4),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--name", required=True)
    ap.add_argument("--mode", choices=("easy", "medium"), help="required to train; --eval-only reads the card's")
    ap.add_argument("--steps", type=int, default=8000)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--weight-decay", type=float, default=1e-3)
    ap.add_argument("--eval-every", type=int, default=500)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--eval-only", action="store_true", help="re-measure the committed checkpoint, train nothing")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    out = args.out or ZOO / args.name

    if args.eval_only:
        from circuitcheck.zoo.load import load

        loaded = load(str(out))
        print(json.dumps(evaluate(loaded.model, args.mode or loaded.card["task"]["mode"])))
        return
    if args.mode is None:
        ap.error("--mode is required to train")

    config = model_config()
    model = build_bridge(config)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0 - step / args.steps)
    history = []
    t0 = time.time()
    loss = torch.tensor(float("nan"))
    for step in range(args.steps):
        batch = generate_caesar_batch(args.batch, SEQ_LEN, args.mode, TRAIN_SEED_BASE + step)
        logits = model(batch.tokens)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch.next_token.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if (step + 1) % args.eval_every == 0 or step + 1 == args.steps:
            ev = evaluate(model, args.mode, n_seqs=200, seed=EVAL_SEED + 1)
            row = {"step": step + 1, "train_loss": round(loss.item(), 4), "seconds": round(time.time() - t0, 1)}
            row |= {"val_" + k: v for k, v in ev.items() if k in ("loss", "mean_prob", "accuracy")}
            history.append(row)
            print(json.dumps(row), flush=True)
    train_seconds = time.time() - t0

    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out / "model.safetensors"))
    model.train(False)
    final_eval = evaluate(model, args.mode)
    card = {
        "name": args.name,
        "format": "tl-native",
        "checkpoint": "model.safetensors",
        "config": config,
        "task": task_block(args.mode),
        "training": {
            "steps": args.steps,
            "batch": args.batch,
            "sequences_seen": args.steps * args.batch,
            "optimizer": "AdamW",
            "lr_peak": args.lr,
            "schedule": "linear decay from lr_peak to 0, no warm-up (the seed's recipe)",
            "weight_decay": args.weight_decay,
            "loss": "cross-entropy of the rotation at every position",
            "train_seeds": f"batch i is generate_caesar_batch(..., seed={TRAIN_SEED_BASE} + i): fresh data every step",
            "init_seed": config["seed"],
            "seconds": round(train_seconds, 1),
            "device": "cpu",
            "threads": args.threads,
            "final_train_loss": round(loss.item(), 4),
            "history": history,
        },
        "evaluation": {
            **final_eval,
            "eval_seed": EVAL_SEED,
            "n_seqs": EVAL_SEQS,
            "positions": f"all {SEQ_LEN} positions of every sequence",
            "mode": args.mode,
            "seed_figure": {"easy": 0.946, "medium": 0.910}[args.mode],
            "measured_by": f"python models/train_caesar.py --name {args.name} --eval-only",
        },
    }
    (out / "card.json").write_text(json.dumps(card, indent=2) + "\n")
    print(json.dumps({"final": final_eval, "seconds": round(train_seconds, 1)}))


if __name__ == "__main__":
    main()
