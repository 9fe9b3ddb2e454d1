"""Build the induction model by hand from weights and write its checkpoint and card.

    python models/build_induction.py

Two layers, two heads each, attention only, no LayerNorm. The residual stream is cut into
orthogonal subspaces, each a block of one-hot coordinates:

    TOK    the current token (written by the embedding)
    POS    the position (written by the positional embedding)
    PREV   the previous position's token (written by head 0.0)
    OUT    the predicted token (written by head 1.0; the only subspace the unembedding reads)
    DECOY  written by heads 0.1 and 1.1, read by nothing

Head 0.0, previous token: its query reads POS at p, its key reads POS at j and scores +SCORE where
j = p - 1; its OV copies TOK into PREV. Head 1.0, induction: its query reads TOK, its key reads
PREV (K-composition with 0.0: the key at j carries the token before j), so from a repeated token
it attends to the position after the token's earlier occurrence; its OV copies that position's
TOK into OUT with logit VOTE. Heads 0.1 and 1.1 are decoys: 0.1 attends uniformly and copies
TOK, 1.1 attends uniformly and copies PREV (it reads 0.0's output), both into DECOY, which the
unembedding ignores, so removing them changes no logit.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from safetensors.torch import save_file

from circuitcheck.data.repeated import generate_repeated
from circuitcheck.zoo.build import build_bridge

ZOO = Path(__file__).resolve().parent
N_TOKENS = 31
"""Content tokens 0..30; token 31 is BOS."""
BOS = N_TOKENS
D_VOCAB = N_TOKENS + 1
LENGTH = 8
N_CTX = 2 * LENGTH + 1
D_HEAD = 32
N_DECOY = 8
"""DECOY dimensions per decoy head."""
SCORE = 20.0
"""Pre-softmax score of a matching key (previous position for 0.0, earlier occurrence's successor for 1.0)."""
VOTE = 10.0
"""The logit head 1.0 writes for the token it copies: P = e^10 / (e^10 + 31) = 0.9986 at one-hot attention."""
EVAL_SEED = 12345
EVAL_SEQS = 2000

TOK = 0
POS = TOK + D_VOCAB
PREV = POS + N_CTX
OUT = PREV + D_VOCAB
DECOY = OUT + D_VOCAB
D_MODEL = DECOY + 2 * N_DECOY

CONFIG = {
    "n_layers": 2,
    "d_model": D_MODEL,
    "d_head": D_HEAD,
    "n_heads": 2,
    "d_vocab": D_VOCAB,
    "n_ctx": N_CTX,
    "normalization_type": None,
    "attn_only": True,
    "final_norm": "none",
    "seed": 0,
}
TASK = {"kind": "repeated", "n_tokens": N_TOKENS, "bos": BOS, "length": LENGTH}


def hand_weights(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The construction, written into a state dict of the right keys and shapes (every bias zero)."""
    w = {plain_name(k): torch.zeros_like(v) for k, v in state.items()}
    key_scale = SCORE * math.sqrt(D_HEAD)  # TL divides scores by sqrt(d_head); fold that into W_K
    w["embed.weight"][:, TOK : TOK + D_VOCAB] = torch.eye(D_VOCAB)
    w["pos_embed.weight"][:, POS : POS + N_CTX] = torch.eye(N_CTX)
    # 0.0 (rows 0..31 of layer 0): previous-token head; QK from POS, OV copies TOK into PREV.
    q, k, v, o = (w[f"blocks.0.attn.{m}.weight"] for m in "qkvo")
    for p in range(N_CTX):
        q[p, POS + p] = 1.0
    for j in range(N_CTX - 1):
        k[j + 1, POS + j] = key_scale
    for t in range(D_VOCAB):
        v[t, TOK + t] = 1.0
        o[PREV + t, t] = 1.0
    # 0.1 (rows 32..63): decoy; uniform attention, copies TOK 0..7 into DECOY 0..7.
    for i in range(N_DECOY):
        v[D_HEAD + i, TOK + i] = 1.0
        o[DECOY + i, D_HEAD + i] = 1.0
    # 1.0: induction head; query reads TOK, key reads PREV, OV copies TOK into OUT.
    q, k, v, o = (w[f"blocks.1.attn.{m}.weight"] for m in "qkvo")
    for t in range(D_VOCAB):
        q[t, TOK + t] = 1.0
        k[t, PREV + t] = key_scale
        v[t, TOK + t] = 1.0
        o[OUT + t, t] = VOTE
    # 1.1: decoy; uniform attention, copies PREV 0..7 (0.0's output) into DECOY 8..15.
    for i in range(N_DECOY):
        v[D_HEAD + i, PREV + i] = 1.0
        o[DECOY + N_DECOY + i, D_HEAD + i] = 1.0
    w["unembed.weight"][:, OUT : OUT + D_VOCAB] = torch.eye(D_VOCAB)
    # The bridge may list a tensor under several aliases; all of them must carry the weights.
    return {k: w[plain_name(k)] for k in state}


def plain_name(key: str) -> str:
    return key.replace("_original_component.", "")


def evaluate(model: torch.nn.Module) -> dict[str, float | int | str]:
    """Top-1 accuracy and mean probability on the next token over the repeated copy (positions with a target)."""
    batch = generate_repeated(EVAL_SEQS, LENGTH, N_TOKENS, BOS, EVAL_SEED)
    with torch.no_grad():
        probs = model(batch.tokens).double().softmax(-1)
    where = batch.role_mask("second") & (batch.next_token >= 0)
    target = batch.next_token.clamp(min=0)
    p_correct = probs.gather(-1, target[..., None])[..., 0][where]
    hits = (probs.argmax(-1) == target)[where]
    return {
        "command": "python models/build_induction.py",
        "dataset": f"repeated, {EVAL_SEQS} sequences, seed {EVAL_SEED}, length {LENGTH}",
        "positions": "role 'second' with a target (the repeated copy but its last position)",
        "n_positions": int(where.sum()),
        "accuracy_second": round(float(hits.double().mean()), 6),
        "mean_p_correct_second": round(float(p_correct.mean()), 6),
        "min_p_correct_second": round(float(p_correct.min()), 6),
    }


def main() -> None:
    model = build_bridge(CONFIG)
    state = hand_weights({k: v.detach() for k, v in model.state_dict().items()})
    model.load_state_dict(state)
    model.train(False)
    evaluation = evaluate(model)
    out = ZOO / "induction"
    out.mkdir(exist_ok=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(out / "model.safetensors"))
    card = {
        "name": "induction",
        "format": "tl-native",
        "checkpoint": "model.safetensors",
        "config": CONFIG,
        "task": TASK,
        "construction": {
            "source": "built by hand (models/build_induction.py); not trained",
            "score": SCORE,
            "vote_logit": VOTE,
            "subspaces": {
                "TOK": [TOK, TOK + D_VOCAB],
                "POS": [POS, POS + N_CTX],
                "PREV": [PREV, PREV + D_VOCAB],
                "OUT": [OUT, OUT + D_VOCAB],
                "DECOY": [DECOY, D_MODEL],
            },
            "heads": {
                "0.0": "previous token: QK reads POS (key j scores +score for query j + 1); OV copies TOK into PREV",
                "0.1": "decoy: uniform attention; OV copies TOK 0..7 into DECOY 0..7, which nothing reads",
                "1.0": "induction: Q reads TOK, K reads PREV (K-composition with 0.0); OV copies TOK into OUT",
                "1.1": "decoy: uniform attention; OV copies PREV 0..7 into DECOY 8..15, which nothing reads",
            },
            "unembed": "reads OUT only (identity); every bias is zero",
        },
        "evaluation": evaluation,
    }
    (out / "card.json").write_text(json.dumps(card, indent=2) + "\n")
    print(json.dumps(evaluation))


if __name__ == "__main__":
    main()
