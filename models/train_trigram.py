"""Train a zoo trigram model (seeds 000/002) and write its checkpoint and card.

    python models/train_trigram.py --name trigram
    python models/train_trigram.py --name trigram-attn-only --attn-only

Trains once; tests and hypothesis runs only load the committed checkpoint.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from circuitcheck.data.trigram import generate_trigram_batch, make_trigram_set
from circuitcheck.zoo.build import build_bridge
from circuitcheck.zoo.trigram_eval import evaluate_trigram_completion, previous_token_association

ZOO = Path(__file__).resolve().parent
TASK = {"d_vocab": 75, "seq_len": 50, "n_trigrams": 225, "n_repeats": 3, "trigram_seed": 0}


def model_config(attn_only: bool) -> dict[str, object]:
    return {
        "n_layers": 1,
        "d_model": 32,
        "d_head": 16,
        "n_heads": 1,
        "d_mlp": 20,
        "d_vocab": TASK["d_vocab"],
        "n_ctx": TASK["seq_len"],
        "act_fn": "relu",
        "normalization_type": "LN",
        "attn_only": attn_only,
        "final_norm": "none",
        "seed": 0,
    }


def lr_at(step: int, steps: int, peak: float, warmup: int) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return peak * 0.5 * (1.0 + math.cos(math.pi * progress))


def warm_start(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> list[str]:
    """Load ``state``; parameters it lacks (an MLP, when starting from the attention-only
    model) keep their initialisation, except the MLP output, zeroed so that training
    starts from exactly the warm-start model's function."""
    result = model.load_state_dict(state, strict=False)
    if result.unexpected_keys:
        raise SystemExit(f"--init checkpoint has tensors this model lacks: {result.unexpected_keys}")
    with torch.no_grad():
        for name in result.missing_keys:
            if ".mlp.out." in name:
                model.get_parameter(name).zero_()
    print(json.dumps({"warm_start_missing": result.missing_keys}), flush=True)
    return list(result.missing_keys)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--name", required=True)
    ap.add_argument("--attn-only", action="store_true")
    ap.add_argument("--steps", type=int, default=12000)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--weight-decay", type=float, default=0.0)
    ap.add_argument("--train-density", type=float, default=0.25)
    ap.add_argument("--pool", type=int, default=100_000, help="training sequences generated up front")
    ap.add_argument("--data-seed", type=int, default=1)
    ap.add_argument("--eval-every", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--init", type=Path, default=None, help="start from this checkpoint (a second training phase)")
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--train-only-mlp", action="store_true", help="freeze everything but the MLP and its norm")
    ap.add_argument("--mlp-drop", type=float, default=0.0, help="probability of skipping the MLP in a training step")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.data_seed)

    config = model_config(args.attn_only)
    trigrams = make_trigram_set(
        TASK["d_vocab"], TASK["n_trigrams"], TASK["trigram_seed"], TASK["n_repeats"]
    )
    pool = generate_trigram_batch(
        n_seqs=args.pool,
        seq_len=TASK["seq_len"],
        d_vocab=TASK["d_vocab"],
        trigrams=trigrams,
        density=args.train_density,
        seed=args.data_seed,
    ).tokens
    model = build_bridge(config)
    fresh: list[str] = []
    if args.init is not None:
        fresh = warm_start(model, load_file(str(args.init)))
    params = [p for n, p in model.named_parameters() if not args.train_only_mlp or ".mlp." in n or ".ln2." in n]
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=args.weight_decay)
    gen = torch.Generator().manual_seed(args.data_seed)
    history = []
    t0 = time.time()
    loss = torch.tensor(float("nan"))
    for step in range(args.steps):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, args.steps, args.lr, warmup=args.warmup)
        idx = torch.randint(0, len(pool), (args.batch,), generator=gen)
        toks = pool[idx]
        if args.mlp_drop > 0 and torch.rand((), generator=gen).item() < args.mlp_drop:
            # Stochastic depth on the MLP: in these steps the head must solve the task alone,
            # which keeps its attention pair-selective (see the card's training note).
            logits = model.run_with_hooks(
                toks, fwd_hooks=[("blocks.0.hook_mlp_out", lambda act, hook: torch.zeros_like(act))]
            )
        else:
            logits = model(toks)
        loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), toks[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if (step + 1) % args.eval_every == 0 or step + 1 == args.steps:
            with torch.no_grad():
                ev = evaluate_trigram_completion(model, trigrams, TASK, n_seqs=1000)
                ev |= previous_token_association(model, trigrams, TASK)
            row = {"step": step + 1, "loss": round(loss.item(), 4), "seconds": round(time.time() - t0, 1), **ev}
            history.append(row)
            print(json.dumps(row), flush=True)
    train_seconds = time.time() - t0

    out = args.out or ZOO / args.name
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out / "model.safetensors"))
    with torch.no_grad():
        final_eval = evaluate_trigram_completion(model, trigrams, TASK, n_seqs=4000)
    previous = []
    if args.init is not None and (args.init.parent / "card.json").is_file():
        before = json.loads((args.init.parent / "card.json").read_text())
        previous = before["training"].get("previous_phases", []) + [
            {k: v for k, v in before["training"].items() if k != "previous_phases"}
            | {"model": before["name"], "config": before["config"]}
        ]
    card = {
        "name": args.name,
        "format": "tl-native",
        "checkpoint": "model.safetensors",
        "config": config,
        "final_norm_note": (
            "The seed model has no final LayerNorm. TL 4's native model always builds one, "
            "so final_norm: none swaps it for an identity and maps the bridge's ln_final slot "
            "to a pass-through component (circuitcheck.zoo.build.build_bridge)."
        ),
        "task": {**TASK, "trigrams": trigrams.tolist()},
        "training": {
            "steps": args.steps,
            "warm_start": (
                None
                if args.init is None
                else "continues the previous phase (below)"
                + ("; parameters it lacked start fresh, the MLP output zeroed" if fresh else "")
            ),
            "trained_parameters": "MLP and ln2 only" if args.train_only_mlp else "all",
            "mlp_drop": args.mlp_drop,
            "batch": args.batch,
            "optimizer": "AdamW",
            "lr_peak": args.lr,
            "schedule": "linear warm-up 200 steps, cosine decay to 0",
            "weight_decay": args.weight_decay,
            "train_density": args.train_density,
            "train_density_note": (
                "Training raised the planted-trigram density from the seed's 5%; evaluation "
                "data keeps 5%. Filler tokens never form a trigram prefix by accident, so the "
                "correct prediction at Y is the same at any density."
            ),
            "data_seed": args.data_seed,
            "pool_sequences": args.pool,
            "seconds": round(train_seconds, 1),
            "device": "cpu",
            "threads": args.threads,
            "final_train_loss": round(loss.item(), 4),
            "history": history,
            "previous_phases": previous,
            "total_seconds": round(train_seconds + sum(p["seconds"] for p in previous), 1),
        },
        "evaluation": {
            **final_eval,
            "density": 0.05,
            "eval_seed": 12345,
            "n_seqs": 4000,
            "measured_by": f"python -m circuitcheck.zoo.trigram_eval {args.name}",
        },
    }
    (out / "card.json").write_text(json.dumps(card, indent=2) + "\n")
    print(json.dumps({"final": final_eval, "seconds": round(train_seconds, 1)}))


if __name__ == "__main__":
    main()
