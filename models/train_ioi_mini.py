"""Train the ioi-mini zoo model: a small GPT-2 (Hugging Face format) on a synthetic indirect-object task.

    .venv/bin/python models/train_ioi_mini.py            # about 3 minutes on one CPU core

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
"""

from __future__ import annotations

import itertools
import json
import random
import shutil
import time
from pathlib import Path

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
CONFIG = {"n_layer": 2, "n_head": 4, "n_embd": 64, "n_positions": 32}
STEPS, BATCH, LR, WARMUP = 2400, 256, 2e-3, 100
HELD_OUT_FRACTION = 0.2
CHECKPOINT_STEPS = [0, 600, 700, 800, 900, 1200, 2400]
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


def split_pairs() -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """Unordered name pairs, split so that held-out prompts pair names never seen together in training."""
    pairs = list(itertools.combinations(range(len(NAMES)), 2))
    random.Random(SEED).shuffle(pairs)
    n_held = int(len(pairs) * HELD_OUT_FRACTION)
    return pairs[n_held:], pairs[:n_held]


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


def accuracy(model: GPT2LMHeadModel, batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> dict[str, float]:
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


def main() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(SEED)
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
    train_pairs, held_pairs = split_pairs()
    eval_gen = torch.Generator().manual_seed(SEED + 1)
    held = {order: maker.make(held_pairs, N_EVAL, eval_gen, order) for order in ("ABBA", "BABA")}
    train_eval = maker.make(train_pairs, N_EVAL, eval_gen)

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
    opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / WARMUP))
    gen = torch.Generator().manual_seed(SEED + 2)
    if OUT.exists():
        shutil.rmtree(OUT)
    history = []
    start = time.time()
    for step in range(STEPS + 1):
        if step in CHECKPOINT_STEPS or step % 100 == 0:
            model.eval()
            row = {
                "step": step,
                "held_out_ABBA": accuracy(model, held["ABBA"]),
                "held_out_BABA": accuracy(model, held["BABA"]),
                "train": accuracy(model, train_eval),
            }
            model.train()
            history.append(row)
            print(json.dumps(row), f"{time.time() - start:.0f}s", flush=True)
            if step in CHECKPOINT_STEPS:
                row["checkpoint"] = f"checkpoints/step-{step}"
                save(model, tok, OUT / "checkpoints" / f"step-{step}")
        if step == STEPS:
            break
        toks, answer, _ = maker.make(train_pairs, BATCH, gen)
        logits = model(toks).logits[:, -1]
        loss = F.cross_entropy(logits, answer)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()

    model.eval()
    save(model, tok, OUT / "_final")
    for item in (OUT / "_final").iterdir():
        item.rename(OUT / item.name)
    (OUT / "_final").rmdir()
    final = history[-1]
    all_pairs = train_pairs + held_pairs
    everywhere = {order: accuracy(model, maker.make(all_pairs, N_EVAL, eval_gen, order)) for order in ("ABBA", "BABA")}
    facts = {
        "task": "indirect object identification (synthetic, word-level)",
        "seed": SEED,
        "config": CONFIG | {"vocab_size": len(tok), "dropout": 0.0},
        "training": {
            "steps": STEPS,
            "batch": BATCH,
            "lr": LR,
            "warmup": WARMUP,
            "optimizer": "AdamW wd 0.01",
            "loss": "cross-entropy on the answer at the last position only",
            "orders": "ABBA and BABA, half each",
            "seconds": round(time.time() - start),
        },
        "held_out": {
            "what": f"{len(held_pairs)} of {len(held_pairs) + len(train_pairs)} unordered name pairs never"
            " seen together in training",
            "n_prompts_per_order": N_EVAL,
            "ABBA": final["held_out_ABBA"],
            "BABA": final["held_out_BABA"],
        },
        "all_pairs": {
            "what": "prompts drawn from every name pair, as a hypothesis file's dataset draws them",
            "n_prompts_per_order": N_EVAL,
            **everywhere,
        },
        "template": TEMPLATE,
        "hypothesis_template": HYPOTHESIS_TEMPLATE,
        "words": {"first": FIRST, "names": NAMES, "places": PLACES, "objects": OBJECTS},
        "held_out_pairs": [[NAMES[a], NAMES[b]] for a, b in held_pairs],
        "history": history,
        "checkpoints": CHECKPOINT_STEPS,
    }
    (OUT / "training.json").write_text(json.dumps(facts, indent=1) + "\n")
    print("held-out top-1: ABBA", final["held_out_ABBA"]["top1"], "BABA", final["held_out_BABA"]["top1"])


if __name__ == "__main__":
    main()
