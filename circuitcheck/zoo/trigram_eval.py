"""Trigram completion accuracy of a model: the number model cards quote.

    python -m circuitcheck.zoo.trigram_eval trigram
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import torch

from circuitcheck.data.trigram import Y, generate_trigram_batch

EVAL_SEED = 12345
EVAL_DENSITY = 0.05


def evaluate_trigram_completion(
    model: Any, trigrams: torch.Tensor, task: dict[str, Any], n_seqs: int = 4000
) -> dict[str, float]:
    """Accuracy and mean probability on Z at planted Y positions, at the seed's 5% density."""
    batch = generate_trigram_batch(
        n_seqs=n_seqs,
        seq_len=task["seq_len"],
        d_vocab=task["d_vocab"],
        trigrams=trigrams,
        density=EVAL_DENSITY,
        seed=EVAL_SEED,
    )
    probs = model(batch.tokens).softmax(-1)
    at_y = batch.roles == Y
    target = batch.next_token[at_y]
    p_y = probs[at_y]
    correct_prob = p_y.gather(-1, target[:, None]).squeeze(-1)
    return {
        "trigram_accuracy": round((p_y.argmax(-1) == target).float().mean().item(), 4),
        "trigram_mean_prob": round(correct_prob.mean().item(), 4),
        "n_trigrams_evaluated": int(at_y.sum().item()),
    }


def previous_token_association(
    model: Any, trigrams: torch.Tensor, task: dict[str, Any], n_seqs: int = 500
) -> dict[str, float]:
    """Training-time view of claim T1: precision and recall of prev-token attention > 0.2
    against probability > 0.2 on the correct next token, over interior positions."""
    batch = generate_trigram_batch(
        n_seqs=n_seqs, seq_len=task["seq_len"], d_vocab=task["d_vocab"], trigrams=trigrams,
        density=EVAL_DENSITY, seed=EVAL_SEED + 1,
    )
    logits, cache = model.run_with_cache(batch.tokens, names_filter="blocks.0.attn.hook_pattern")
    pattern = cache["blocks.0.attn.hook_pattern"][:, 0]
    seq = pattern.shape[-1]
    prev = pattern[:, torch.arange(1, seq - 1), torch.arange(0, seq - 2)] > 0.2
    target = batch.next_token[:, 1 : seq - 1]
    probs = logits[:, 1 : seq - 1].softmax(-1).gather(-1, target.clamp(min=0)[..., None]).squeeze(-1)
    right = probs > 0.2
    both = (prev & right).sum().item()
    return {
        "t1_precision": round(both / max(1, int(prev.sum())), 4),
        "t1_recall": round(both / max(1, int(right.sum())), 4),
    }


def main() -> None:
    from circuitcheck.zoo.load import load_model, load_zoo_card

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("name")
    args = ap.parse_args()
    card = load_zoo_card(args.name)
    model = load_model(args.name)
    trigrams = torch.tensor(card["task"]["trigrams"])
    with torch.no_grad():
        print(json.dumps(evaluate_trigram_completion(model, trigrams, card["task"])))


if __name__ == "__main__":
    main()
