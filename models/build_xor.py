"""Build the seed 003 XOR model by hand from its tables and write its checkpoint and card.

    python models/build_xor.py

One layer, two heads, attention only, no LayerNorm. The residual stream holds a
one-hot token code (7 dims) plus two "vote" dims read by the unembedding as the
logits of T and F. From the query Q, head 0 scores keys B +1e4, A and Q -1e4, C
and D 0 (pre-softmax, as in the seed's table) and writes T for C, F for D; head 1
swaps A and B and writes F for C, T for D. No other path reaches the logits.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from safetensors.torch import save_file

from circuitcheck.zoo.build import build_bridge

ZOO = Path(__file__).resolve().parent
VOCAB = ["A", "B", "C", "D", "Q", "T", "F"]
STRINGS = ["ACQT", "ADQF", "BCQF", "BDQT"]
SCORE = 1e4
"""The seed's pre-softmax attention scores (+-10000)."""
VOTE = 10.0
"""The logit a head writes for its answer: P(answer) = e^10 / (e^10 + 6) = 0.9997."""

# Seed 003's tables: pre-softmax score sign per key token, and OV behaviour (source -> output).
HEADS = [
    {"scores": {"A": -1, "B": +1, "C": 0, "D": 0, "Q": -1}, "ov": {"C": "T", "D": "F"}},
    {"scores": {"A": +1, "B": -1, "C": 0, "D": 0, "Q": -1}, "ov": {"C": "F", "D": "T"}},
]
D_HEAD = 4
D_MODEL = len(VOCAB) + 2
VOTE_DIM = {"T": len(VOCAB), "F": len(VOCAB) + 1}

CONFIG = {
    "n_layers": 1,
    "d_model": D_MODEL,
    "d_head": D_HEAD,
    "n_heads": len(HEADS),
    "d_vocab": len(VOCAB),
    "n_ctx": 4,
    "normalization_type": None,
    "attn_only": True,
    "final_norm": "none",
    "seed": 0,
}


def hand_weights(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The construction, written into a state dict of the right keys and shapes."""
    tok = VOCAB.index
    w = {plain_name(k): torch.zeros_like(v) for k, v in state.items()}
    w["embed.weight"][: len(VOCAB), : len(VOCAB)] = torch.eye(len(VOCAB))
    for h, head in enumerate(HEADS):
        row = h * D_HEAD
        w["blocks.0.attn.q.weight"][row, tok("Q")] = 1.0
        for name, sign in head["scores"].items():
            # TL divides scores by sqrt(d_head); fold that into W_K so the scores are the seed's.
            w["blocks.0.attn.k.weight"][row, tok(name)] = sign * SCORE * math.sqrt(D_HEAD)
        w["blocks.0.attn.v.weight"][row + 0, tok("C")] = 1.0
        w["blocks.0.attn.v.weight"][row + 1, tok("D")] = 1.0
        w["blocks.0.attn.o.weight"][VOTE_DIM[head["ov"]["C"]], row + 0] = VOTE
        w["blocks.0.attn.o.weight"][VOTE_DIM[head["ov"]["D"]], row + 1] = VOTE
    for answer, dim in VOTE_DIM.items():
        w["unembed.weight"][tok(answer), dim] = 1.0
    # The bridge lists each tensor under several aliases; all of them must carry the weights.
    return {k: w[plain_name(k)] for k in state}


def plain_name(key: str) -> str:
    return key.replace("_original_component.", "")


def main() -> None:
    model = build_bridge(CONFIG)
    state = hand_weights({k: v.detach() for k, v in model.state_dict().items()})
    model.load_state_dict(state)
    tokens = torch.tensor([[VOCAB.index(c) for c in s] for s in STRINGS])
    with torch.no_grad():
        probs = model(tokens)[:, 2].softmax(-1)
    correct = probs[torch.arange(len(STRINGS)), tokens[:, 3]]
    out = ZOO / "xor"
    out.mkdir(exist_ok=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(out / "model.safetensors"))
    card = {
        "name": "xor",
        "format": "tl-native",
        "checkpoint": "model.safetensors",
        "config": CONFIG,
        "task": {"kind": "strings", "vocab": VOCAB, "strings": STRINGS, "predict_position": 2},
        "construction": {
            "source": "seed 003, built by hand (models/build_xor.py); not trained",
            "score": SCORE,
            "vote_logit": VOTE,
            "heads": HEADS,
        },
        "evaluation": {
            "p_correct_at_Q": {s: round(float(p), 6) for s, p in zip(STRINGS, correct, strict=True)},
            "accuracy_at_Q": float((probs.argmax(-1) == tokens[:, 3]).float().mean()),
        },
    }
    (out / "card.json").write_text(json.dumps(card, indent=2) + "\n")
    print(json.dumps(card["evaluation"]))


if __name__ == "__main__":
    main()
