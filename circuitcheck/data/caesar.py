"""The Caesar-cipher task of seed 001: classify the rotation of enciphered 3-letter words.

Each sequence is 3-letter words separated by single spaces, starting with a word
at position 0 and cut to ``seq_len``. One rotation ``r`` in 0..25 per sequence
shifts every letter (``a -> a + r mod 26``); spaces stay. The label at every
position is ``r``, stored in :attr:`TokenBatch.next_token` (the correct
prediction at each position), so metrics index the 26 output logits by it.

The seed drew its 100 words from a book we do not have. :data:`WORDS` is a fixed
list of 100 common 3-letter English words in rough frequency-rank order, and
"easy" mode weights rank ``k`` (1-based) by ``1/k``. That curve is flatter than
the seed's: the first 4 words carry 40% of the mass (seed: about 50%) and the
first 33 words 79% (seed: about 90%). "medium" mode draws the words uniformly.

Vocabulary (d_vocab 27): ``a``..``z`` are 0..25, space is 26 (named ``space``).
Roles: the 1st, 2nd and 3rd letter of each word are ``A``, ``B``, ``C`` (the
seed's *A, *B, *C); spaces are ``space``.
"""

from __future__ import annotations

import string
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from circuitcheck.data.batch import TokenBatch
from circuitcheck.data.registry import DataContext, DatasetSpec, dataset_kind
from circuitcheck.errors import PlanError
from circuitcheck.spec.base import Seed

if TYPE_CHECKING:  # torch is imported where tokens are built: `validate` loads this module without it
    import torch

WORDS: tuple[str, ...] = (
    "the", "and", "for", "you", "was", "are", "not", "but", "his", "she",
    "can", "all", "her", "one", "had", "him", "has", "out", "who", "new",
    "now", "its", "our", "two", "may", "how", "any", "use", "get", "way",
    "see", "man", "day", "did", "too", "off", "own", "say", "why", "yes",
    "got", "let", "put", "old", "big", "few", "end", "men", "set", "far",
    "run", "try", "ask", "saw", "lot", "yet", "war", "car", "per", "law",
    "top", "age", "air", "job", "buy", "pay", "eat", "cut", "hot", "low",
    "bad", "red", "sit", "boy", "guy", "sea", "eye", "arm", "bed", "six",
    "ten", "dog", "sun", "oil", "due", "act", "add", "win", "fun", "kid",
    "son", "art", "key", "box", "map", "tax", "fit", "cup", "leg", "ago",
)  # fmt: skip
"""100 common 3-letter lowercase English words, most frequent first."""

MODES = ("easy", "medium")
Mode = Literal["easy", "medium"]
N_LETTERS = 26
SPACE = 26
D_VOCAB = 27
TOKEN_NAMES: tuple[str, ...] = (*string.ascii_lowercase, "space")
ROLE_NAMES: tuple[str, ...] = ("none", "A", "B", "C", "space")
"""Role codes of :attr:`TokenBatch.roles` for this dataset; index = code."""
ROLE_A, ROLE_B, ROLE_C, ROLE_SPACE = (ROLE_NAMES.index(r) for r in ("A", "B", "C", "space"))


def zipf_weights(n: int) -> tuple[float, ...]:
    """Weight of rank ``k`` (1-based) proportional to ``1/k``, normalised."""
    raw = [1.0 / k for k in range(1, n + 1)]
    total = sum(raw)
    return tuple(w / total for w in raw)


def mode_weights(mode: str, n_words: int = len(WORDS)) -> tuple[float, ...]:
    """The word weights of a mode: Zipf for ``easy``, uniform for ``medium``."""
    if mode == "easy":
        return zipf_weights(n_words)
    if mode == "medium":
        return tuple(1.0 / n_words for _ in range(n_words))
    raise ValueError(f"unknown Caesar mode {mode!r}; expected one of {MODES}")


def word_tokens(words: tuple[str, ...] | list[str]) -> torch.Tensor:
    """Letter ids ``[n_words, 3]``; refuses words that are not 3 lowercase letters."""
    import torch

    bad = [w for w in words if len(w) != 3 or any(c not in string.ascii_lowercase for c in w)]
    if bad:
        raise ValueError(f"words must be 3 lowercase letters, got {bad[:5]}")
    return torch.tensor([[ord(c) - ord("a") for c in w] for w in words], dtype=torch.long)


def _weights_tensor(weights: tuple[float, ...] | list[float], n_words: int) -> torch.Tensor:
    import torch

    w = torch.tensor(weights, dtype=torch.float64)
    if w.shape != (n_words,) or not torch.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
        raise ValueError(f"weights must be {n_words} finite non-negative numbers with a positive sum")
    return w / w.sum()


def generate_caesar_batch(
    n_seqs: int,
    seq_len: int,
    mode: str,
    seed: int,
    words: tuple[str, ...] | list[str] = WORDS,
    weights: tuple[float, ...] | list[float] | None = None,
) -> TokenBatch:
    """``n_seqs`` enciphered sequences; ``weights`` default to the mode's.

    Words are drawn i.i.d. from ``weights`` and one rotation per sequence
    uniformly from 0..25, all from one ``torch.Generator`` seeded with ``seed``.
    ``next_token[b, :]`` is sequence ``b``'s rotation at every position.
    """
    import torch

    if n_seqs <= 0 or seq_len <= 0:
        raise ValueError(f"n_seqs and seq_len must be positive, got {n_seqs}, {seq_len}")
    letters = word_tokens(words)
    w = _weights_tensor(mode_weights(mode, len(words)) if weights is None else weights, len(words))
    gen = torch.Generator().manual_seed(seed)
    n_words = seq_len // 4 + 1
    choice = torch.multinomial(w.expand(n_seqs, -1), n_words, replacement=True, generator=gen)
    rotation = torch.randint(0, N_LETTERS, (n_seqs,), generator=gen)

    spaces = torch.full((n_seqs, n_words, 1), SPACE, dtype=torch.long)
    plain = torch.cat([letters[choice], spaces], dim=2).reshape(n_seqs, -1)[:, :seq_len]
    is_letter = plain < N_LETTERS
    tokens = torch.where(is_letter, (plain + rotation[:, None]) % N_LETTERS, plain)
    word_roles = torch.tensor([ROLE_A, ROLE_B, ROLE_C, ROLE_SPACE], dtype=torch.long)
    roles = word_roles.repeat(n_words)[:seq_len].expand(n_seqs, -1).clone()
    labels = rotation[:, None].expand(n_seqs, seq_len).clone()
    params: dict[str, object] = {"mode": mode, "seed": seed, "seq_len": seq_len, "n_seqs": n_seqs}
    return TokenBatch(tokens, labels, roles, params, role_names=ROLE_NAMES, token_names=TOKEN_NAMES)


def decode(tokens: torch.Tensor, rotation: int) -> str:
    """One sequence of token ids rotated back by ``rotation``, as text with spaces."""
    out = []
    for t in tokens.tolist():
        out.append(" " if t == SPACE else chr(ord("a") + (t - rotation) % N_LETTERS))
    return "".join(out)


def letter_frequencies(
    words: tuple[str, ...] | list[str] = WORDS, weights: tuple[float, ...] | list[float] | None = None
) -> torch.Tensor:
    """``[3, 26]``: probability of each letter at word positions 0, 1, 2 (default: easy weights)."""
    import torch

    letters = word_tokens(words)
    w = _weights_tensor(zipf_weights(len(words)) if weights is None else weights, len(words))
    freqs = torch.zeros(3, N_LETTERS, dtype=torch.float64)
    for pos in range(3):
        freqs[pos].index_add_(0, letters[:, pos], w)
    return freqs


def rotation_posterior(first_letter_freqs: torch.Tensor) -> torch.Tensor:
    """``[26 tokens, 26 rotations]``: P(rotation | enciphered letter) from one position's
    letter frequencies and a uniform rotation prior: ``P(r | c) ∝ f[(c - r) mod 26]``.

    With row 0 of :func:`letter_frequencies` this is the ideal prediction at sequence
    position 0 (claim C1).
    """
    import torch

    c = torch.arange(N_LETTERS)[:, None]
    r = torch.arange(N_LETTERS)[None, :]
    table = first_letter_freqs[(c - r) % N_LETTERS]
    return table / table.sum(dim=1, keepdim=True).clamp(min=1e-30)


@dataset_kind
class CaesarDataset(DatasetSpec):
    """Enciphered 3-letter words; word list, weights and mode come from the model card's task."""

    kind: Literal["caesar"] = "caesar"
    n_seqs: int = Field(gt=0, le=100_000)
    seed: Seed
    mode: Mode | None = None
    seq_len: int | None = Field(default=None, gt=0)

    def build(self, ctx: DataContext) -> TokenBatch:
        task = ctx.model_card.get("task")
        if not isinstance(task, dict) or task.get("kind") != "caesar":
            raise PlanError(
                ("dataset", "kind"),
                "the model card has no caesar task (task.kind: caesar with mode, words, weights)",
                "use a Caesar zoo model (caesar-easy, caesar-medium), or another dataset kind",
            )
        if ctx.d_vocab != D_VOCAB:
            raise PlanError(("dataset", "kind"), f"the Caesar vocabulary has {D_VOCAB} tokens, the model {ctx.d_vocab}")
        seq_len = self.seq_len or int(task["seq_len"])
        if seq_len > ctx.n_ctx:
            raise PlanError(("dataset", "seq_len"), f"seq_len {seq_len} exceeds the model's n_ctx {ctx.n_ctx}")
        words = [str(w) for w in task["words"]]
        mode = self.mode or str(task["mode"])
        weights = _card_weights(task, words) if mode == task["mode"] else list(mode_weights(mode, len(words)))
        try:
            batch = generate_caesar_batch(self.n_seqs, seq_len, mode, self.seed, words=words, weights=weights)
        except ValueError as err:
            raise PlanError(
                ("dataset",),
                f"the model card's caesar task is malformed: {err}",
                "regenerate the card with models/train_caesar.py",
            ) from None
        params = self.model_dump() | {"mode": mode, "seq_len": seq_len, "trained_mode": task["mode"]}
        return TokenBatch(
            batch.tokens, batch.next_token, batch.roles, params, role_names=ROLE_NAMES, token_names=TOKEN_NAMES,
            tables={FIRST_LETTER_TABLE: first_letter_table(words, weights)},
        )


FIRST_LETTER_TABLE = "rotation_given_first_letter"
"""The exact P(rotation | token at position 0): what claim C1 compares the model with."""


def first_letter_table(words: list[str], weights: list[float]) -> torch.Tensor:
    """``[27 tokens, 26 rotations]``; the space row (never at position 0) is uniform."""
    import torch

    table = torch.full((D_VOCAB, N_LETTERS), 1.0 / N_LETTERS, dtype=torch.float64)
    table[:N_LETTERS] = rotation_posterior(letter_frequencies(words, weights)[0])
    return table


def _card_weights(task: dict[str, Any], words: list[str]) -> list[float]:
    weights = [float(w) for w in task["weights"]]
    if len(weights) != len(words):
        raise PlanError(
            ("dataset",),
            f"the model card's task has {len(words)} words but {len(weights)} weights",
            "regenerate the card with models/train_caesar.py",
        )
    return weights
