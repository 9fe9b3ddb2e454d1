"""Train the ioi-mini zoo model: a small GPT-2 (Hugging Face format) on a synthetic indirect-object task.

    .venv/bin/python models/train_ioi_mini.py            # about 5 minutes on one CPU core

Writes models/ioi-mini/ (config.json, model.safetensors, tokenizer files, training.json) and
models/ioi-mini/checkpoints/step-<N>/ (complete loadable folders along training). No card.json: the
loader would then take the folder for a TransformerLens-native zoo model; this one is an HF folder.

Prompt layout. Every prompt is "{first} {N1} and {N2} went to the {place} , {S} gave a {object} to" with S
one of N1, N2 and the answer the other one. Keeping one slot layout (and swapping which name repeats)
instead of writing a second template "{B} and {A} ..." means every prompt has 14 tokens and the names sit
at positions 1, 3 and 9 in all of them, which the `prompts` dataset kind needs (one length, aligned
positions). The cost: the roles IO and S1 are not at fixed positions across the two orders, so a
hypothesis that names positions IO / S1 / S2 uses one order only: ABBA (S = N2, IO at 1, S1 at 3, S2 at 9)
is the template "When {A} and {B} went to the {place} , {B} gave a {object} to", answer {A}. Training on
both orders (ABBA and BABA, half each) is what stops the model from answering "the name at position 1".

Name pairs are split before training: 20% of the unordered pairs never appear together in training; of those,
the first half are the test pairs (reported in training.json's "test") and the rest the validation pairs the
settings below were chosen on (models/README.md lists the variants and their validation accuracy).

The token embeddings are a fixed random orthogonal matrix (unit rows), frozen; GPT-2 ties the unembedding to them.
With trainable embeddings the model let some names that never meet in training drift together and could not tell
them apart on held-out pairs; with 52 tokens in 64 dimensions every pair of tokens stays exactly orthogonal, so
"which name repeats" reads the same for pairs never seen together. Positions stay trainable (52 + 32 orthogonal
vectors do not fit in 64 dimensions).
"""

from __future__ import annotations

import itertools
import json
import math
import random
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from tokenizers import Tokenizer
from tokenizers.models import WordLevel
from tokenizers.pre_tokenizers import Whitespace
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

OUT = Path(__file__).resolve().parent / "ioi-mini"
SEED = 0
FIRST = ["When", "After", "While"]
NAMES = [
    "John",
    "Mary",
    "Tom",
    "Anna",
    "James",
    "Sarah",
    "David",
    "Laura",
    "Mark",
    "Emma",
    "Paul",
    "Kate",
    "Peter",
    "Alice",
    "Steve",
    "Lucy",
    "Mike",
    "Rose",
    "Dan",
    "Jane",
    "Sam",
    "Claire",
    "Ben",
    "Helen",
]
PLACES = ["store", "park", "school", "office", "garden", "station", "market", "library"]
OBJECTS = ["ball", "book", "drink", "kiss", "key", "bone", "ring", "letter"]
FILLER = ["and", "went", "to", "the", ",", "gave", "a"]
TEMPLATE = "{first} {N1} and {N2} went to the {place} , {S} gave a {object} to"
HYPOTHESIS_TEMPLATE = "When {A} and {B} went to the {place} , {B} gave a {object} to"  # ABBA, answer {A}
SPECIALS = ["[UNK]", "<|endoftext|>"]
SEQ_LEN = 14
N1_POS, N2_POS, S_POS = 1, 3, 9
# n_inner 64 (a quarter of GPT-2's 4 x n_embd): with trainable embeddings and the default MLP the model learned
# pair-specific answers and missed whole held-out pairs; with 16 or 32 it stayed at chance for 2250 steps.
CONFIG: dict[str, Any] = {"n_layer": 2, "n_head": 4, "n_embd": 64, "n_positions": 32, "n_inner": 64}
STEPS, BATCH, LR, WARMUP, WEIGHT_DECAY = 3000, 256, 2e-3, 100, 0.01  # lr: warm-up, then cosine decay to 0
HELD_OUT_FRACTION = 0.2
EMBED_NORM = 1.0  # unit rows: the tied logits then start at most ~|ln_f(x)| = 8, and ln_f's gain can scale them
# The task forms between steps 200 and 400 (validation top-1 0.5 at 200, 0.84-0.87 at 300, 0.995-1.0 at 400).
CHECKPOINT_STEPS = [0, 200, 250, 300, 350, 400, 1000, 3000]
N_EVAL = 4000


def build_tokenizer() -> PreTrainedTokenizerFast:
    words = SPECIALS + FILLER + FIRST + NAMES + PLACES + OBJECTS
    vocab = {w: i for i, w in enumerate(dict.fromkeys(words))}
    core = Tokenizer(WordLevel(vocab=vocab, unk_token="[UNK]"))
    core.pre_tokenizer = Whitespace()
    # No BOS is added: the prompts are encoded as they are, the way a `prompts` dataset tokenizes them.
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        unk_token="[UNK]",
        bos_token="<|endoftext|>",
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
    )


Pairs = list[tuple[int, int]]

TEST_DISCLOSURE = (
    "This is the second look at the test pairs. The previous attempt (trainable embeddings, n_inner 64, cosine decay,"
    " validation top-1 0.9505 ABBA / 1.0 BABA) evaluated them once and failed the 0.95 bar (test 0.9215 ABBA /"
    " 0.965 BABA). This setting (frozen orthogonal token embeddings, otherwise the same) was proposed before looking"
    " at test again, tried as a single run chosen on validation (top-1 1.0 / 1.0), and then evaluated on test once."
)


def split_pairs() -> tuple[Pairs, Pairs, Pairs]:
    """(train, validation, test) unordered name pairs: validation and test pair names never seen together in
    training. The held-out set is the one the first ioi-mini was trained without (same seed and fraction)."""
    pairs = list(itertools.combinations(range(len(NAMES)), 2))
    random.Random(SEED).shuffle(pairs)
    n_held = int(len(pairs) * HELD_OUT_FRACTION)
    n_test = (n_held + 1) // 2
    return pairs[n_held:], pairs[n_test:n_held], pairs[:n_test]


class PromptMaker:
    """Token ids of filled prompts, built directly from the vocabulary (checked against the tokenizer once)."""

    def __init__(self, tok: PreTrainedTokenizerFast) -> None:
        v = tok.get_vocab()
        self.first = torch.tensor([v[w] for w in FIRST])
        self.names = torch.tensor([v[w] for w in NAMES])
        self.places = torch.tensor([v[w] for w in PLACES])
        self.objects = torch.tensor([v[w] for w in OBJECTS])
        skeleton = TEMPLATE.format(
            first=FIRST[0], N1=NAMES[0], N2=NAMES[0], place=PLACES[0], S=NAMES[0], object=OBJECTS[0]
        )
        self.skeleton = torch.tensor(tok(skeleton)["input_ids"])
        assert len(self.skeleton) == SEQ_LEN, "every prompt must have 14 tokens"

    def make(
        self, pairs: list[tuple[int, int]], n: int, gen: torch.Generator, order: str = "mixed"
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(tokens [n, 14], answer ids [n], repeated-name ids [n]); order is "ABBA", "BABA" or "mixed"."""
        pair_t = torch.tensor(pairs)[torch.randint(len(pairs), (n,), generator=gen)]
        flip = torch.randint(2, (n,), generator=gen).bool()  # which name of the pair comes first
        n1 = torch.where(flip, pair_t[:, 1], pair_t[:, 0])
        n2 = torch.where(flip, pair_t[:, 0], pair_t[:, 1])
        if order == "mixed":
            abba = torch.randint(2, (n,), generator=gen).bool()
        else:
            abba = torch.full((n,), order == "ABBA")
        s = torch.where(abba, n2, n1)
        io = torch.where(abba, n1, n2)
        toks = self.skeleton.repeat(n, 1)
        toks[:, 0] = self.first[torch.randint(len(FIRST), (n,), generator=gen)]
        toks[:, N1_POS] = self.names[n1]
        toks[:, N2_POS] = self.names[n2]
        toks[:, 7] = self.places[torch.randint(len(PLACES), (n,), generator=gen)]
        toks[:, S_POS] = self.names[s]
        toks[:, 12] = self.objects[torch.randint(len(OBJECTS), (n,), generator=gen)]
        return toks, self.names[io], self.names[s]


Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def accuracy(model: GPT2LMHeadModel, batch: Batch) -> dict[str, float]:
    toks, answer, repeated = batch
    with torch.no_grad():
        logits = model(toks).logits[:, -1]
    diff = logits.gather(1, answer[:, None]) - logits.gather(1, repeated[:, None])
    return {
        "top1": round(float((logits.argmax(-1) == answer).float().mean()), 4),
        "logit_diff": round(float(diff.mean()), 3),
    }


def save(model: GPT2LMHeadModel, tok: PreTrainedTokenizerFast, folder: Path) -> None:
    if folder.exists():
        shutil.rmtree(folder)
    model.save_pretrained(folder, safe_serialization=True)
    tok.save_pretrained(folder)


def per_order(model: GPT2LMHeadModel, batches: dict[str, Batch]) -> dict[str, dict[str, float]]:
    return {order: accuracy(model, batch) for order, batch in batches.items()}


def failing_pairs(model: GPT2LMHeadModel, maker: PromptMaker, pairs: Pairs, gen: torch.Generator) -> list[str]:
    """The pairs (and orders) under 0.95 top-1 on 200 prompts each: where the errors sit."""
    out = []
    for a, b in pairs:
        for order in ("ABBA", "BABA"):
            top1 = accuracy(model, maker.make([(a, b)], 200, gen, order))["top1"]
            if top1 < 0.95:
                out.append(f"{NAMES[a]}-{NAMES[b]} {order} {top1}")
    return out


def freeze_orthogonal_embeddings(model: GPT2LMHeadModel) -> None:
    """Rows of a seeded random orthogonal matrix (unit norm) as token embeddings, frozen; the tied unembedding is
    the same tensor, so it is frozen too."""
    vocab, width = model.transformer.wte.weight.shape
    assert vocab <= width, "orthogonal token embeddings need vocab_size <= n_embd"
    gen = torch.Generator().manual_seed(SEED + 3)
    q, r = torch.linalg.qr(torch.randn(width, width, generator=gen, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r))  # the sign fix makes q uniformly distributed over orthogonal matrices
    with torch.no_grad():
        model.transformer.wte.weight.copy_((q[:vocab] * EMBED_NORM).float())
    model.transformer.wte.weight.requires_grad_(False)
    assert model.lm_head.weight is model.transformer.wte.weight, "the unembedding must stay tied to the embedding"


def main() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(SEED)
    out = Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else OUT
    tok = build_tokenizer()
    maker = PromptMaker(tok)
    # The slot positions PromptMaker writes to must be where the tokenizer puts the words.
    ids = tok(TEMPLATE.format(first="After", N1="Mary", N2="Tom", place="park", S="Tom", object="key"))["input_ids"]
    assert tok.convert_ids_to_tokens([ids[0], ids[N1_POS], ids[N2_POS], ids[7], ids[S_POS], ids[12]]) == [
        "After",
        "Mary",
        "Tom",
        "park",
        "Tom",
        "key",
    ]
    train_pairs, val_pairs, test_pairs = split_pairs()
    eval_gen = torch.Generator().manual_seed(SEED + 1)
    orders = ("ABBA", "BABA")
    val = {order: maker.make(val_pairs, N_EVAL, eval_gen, order) for order in orders}
    train_eval = {order: maker.make(train_pairs, N_EVAL, eval_gen, order) for order in orders}

    config = GPT2Config(
        vocab_size=len(tok),
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        **CONFIG,
    )
    model = GPT2LMHeadModel(config)
    freeze_orthogonal_embeddings(model)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=LR, weight_decay=WEIGHT_DECAY)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / WARMUP) * 0.5 * (1 + math.cos(math.pi * min(s, STEPS) / STEPS))
    )
    gen = torch.Generator().manual_seed(SEED + 2)
    if out.exists():
        shutil.rmtree(out)
    history = []
    start = time.time()
    for step in range(STEPS + 1):
        if step in CHECKPOINT_STEPS or step % 100 == 0:
            model.eval()
            row: dict[str, object] = {"step": step, "validation": per_order(model, val)}
            row["train"] = per_order(model, train_eval)
            model.train()
            history.append(row)
            print(json.dumps(row), f"{time.time() - start:.0f}s", flush=True)
            if step in CHECKPOINT_STEPS:
                row["checkpoint"] = f"checkpoints/step-{step}"
                save(model, tok, out / "checkpoints" / f"step-{step}")
        if step == STEPS:
            break
        toks, answer, _ = maker.make(train_pairs, BATCH, gen)
        logits = model(toks).logits[:, -1]
        loss = F.cross_entropy(logits, answer)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    seconds = round(time.time() - start)

    model.eval()
    save(model, tok, out / "_final")
    for item in (out / "_final").iterdir():
        item.rename(out / item.name)
    (out / "_final").rmdir()
    # The test pairs are looked at here only, after training (the settings were chosen on validation).
    test = per_order(model, {order: maker.make(test_pairs, N_EVAL, eval_gen, order) for order in orders})
    all_pairs = train_pairs + val_pairs + test_pairs
    everywhere = per_order(model, {order: maker.make(all_pairs, N_EVAL, eval_gen, order) for order in orders})
    failing = failing_pairs(model, maker, val_pairs + test_pairs, eval_gen)

    def named(pairs: Pairs) -> list[list[str]]:
        return [[NAMES[a], NAMES[b]] for a, b in pairs]

    facts = {
        "task": "indirect object identification (synthetic, word-level)",
        "seed": SEED,
        "config": CONFIG | {"vocab_size": len(tok), "dropout": 0.0},
        "embeddings": f"token embeddings: rows of a random orthogonal matrix (seed {SEED + 3}), norm {EMBED_NORM},"
        " frozen; the unembedding is tied to them; position embeddings trained",
        "training": {
            "steps": STEPS,
            "batch": BATCH,
            "lr": LR,
            "warmup": WARMUP,
            "schedule": "linear warm-up, then cosine decay to 0 at the last step",
            "optimizer": f"AdamW wd {WEIGHT_DECAY}",
            "loss": "cross-entropy on the answer at the last position only",
            "orders": "ABBA and BABA, half each",
            "seconds": seconds,
            "threads": 1,
        },
        "pairs": {
            "what": f"{len(all_pairs)} unordered name pairs: {len(train_pairs)} train, {len(val_pairs)} validation"
            f" (settings chosen on these), {len(test_pairs)} test (evaluated after training); validation"
            " and test pairs never appear together in a training prompt",
            "test_disclosure": TEST_DISCLOSURE,
            "n_prompts_per_order": N_EVAL,
        },
        "train": per_order(model, train_eval),
        "validation": history[-1]["validation"],
        "test": test,
        "all_pairs": {
            "what": "prompts drawn from every name pair, as a hypothesis file's dataset draws them",
            **everywhere,
        },
        "pairs_under_0.95": {"what": "held-out pairs and orders under 0.95 top-1 (200 prompts each)", "pairs": failing},
        "template": TEMPLATE,
        "hypothesis_template": HYPOTHESIS_TEMPLATE,
        "words": {"first": FIRST, "names": NAMES, "places": PLACES, "objects": OBJECTS},
        "validation_pairs": named(val_pairs),
        "test_pairs": named(test_pairs),
        "history": history,
        "checkpoints": CHECKPOINT_STEPS,
    }
    (out / "training.json").write_text(json.dumps(facts, indent=1) + "\n")
    print("test top-1: ABBA", test["ABBA"]["top1"], "BABA", test["BABA"]["top1"], "failing:", failing)


if __name__ == "__main__":
    main()
