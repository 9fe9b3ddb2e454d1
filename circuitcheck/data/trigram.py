"""The trigram task of seeds 000/002: random tokens with planted (X, Y, Z) triples.

Filler tokens are uniform, except that a filler token is redrawn when it would
complete a trigram prefix (X, Y) by accident. Without this, with a few hundred
trigrams over a 75-token vocabulary about 5% of random pairs look like a
trigram start, and the best achievable probability on Z at a planted Y drops
to about 0.25; the seed model's mean probability of 0.80 shows its data had no
such ambiguity. Because of it, the planted density only changes how often the
signal appears, never the right answer at Y.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from circuitcheck.data.batch import ROLE_NAMES, TokenBatch, next_tokens_of

if TYPE_CHECKING:  # torch is imported where tokens are built: `validate` loads this module without it
    import torch

X, Y, Z = (ROLE_NAMES.index(r) for r in ("X", "Y", "Z"))


def make_trigram_set(
    d_vocab: int, n_trigrams: int, seed: int, n_repeats: int = 0
) -> torch.Tensor:
    """``n_trigrams`` random triples ``[n, 3]`` whose (X, Y) prefixes are all distinct.

    The first ``n_repeats`` have X == Y, like the seed's (72, 72, 48): the claim
    that such trigrams are predicted without attention (T7) needs some to exist.
    """
    import torch

    if n_trigrams > d_vocab * d_vocab or n_repeats > min(d_vocab, n_trigrams):
        raise ValueError(f"cannot draw {n_trigrams} distinct prefixes from {d_vocab}^2")
    gen = torch.Generator().manual_seed(seed)
    diagonal = torch.arange(d_vocab) * (d_vocab + 1)
    repeats = diagonal[torch.randperm(d_vocab, generator=gen)[:n_repeats]]
    is_repeat = torch.zeros(d_vocab * d_vocab, dtype=torch.bool)
    is_repeat[diagonal] = True
    others = torch.randperm(d_vocab * d_vocab, generator=gen)
    others = others[~is_repeat[others]][: n_trigrams - n_repeats]
    prefixes = torch.cat([repeats, others])
    completions = torch.randint(0, d_vocab, (n_trigrams,), generator=gen)
    return torch.stack([prefixes // d_vocab, prefixes % d_vocab, completions], dim=1)


def generate_trigram_batch(
    *,
    n_seqs: int,
    seq_len: int,
    d_vocab: int,
    trigrams: torch.Tensor,
    density: float,
    seed: int,
) -> TokenBatch:
    """Sequences where about ``density`` of all tokens belong to planted trigrams."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    is_prefix = torch.zeros(d_vocab, d_vocab, dtype=torch.bool)
    is_prefix[trigrams[:, 0], trigrams[:, 1]] = True

    # A start at p covers p..p+2; starts are kept only if they don't overlap.
    start_prob = density / (3.0 - 2.0 * density)
    wants_start = torch.rand(n_seqs, seq_len, generator=gen) < start_prob
    choice = torch.randint(0, len(trigrams), (n_seqs, seq_len), generator=gen)

    tokens = torch.full((n_seqs, seq_len), -1, dtype=torch.long)
    roles = torch.zeros(n_seqs, seq_len, dtype=torch.long)
    busy_until = torch.zeros(n_seqs, dtype=torch.long)
    for p in range(seq_len - 2):
        start = wants_start[:, p] & (busy_until <= p)
        rows = start.nonzero().squeeze(1)
        tri = trigrams[choice[rows, p]]
        for offset, role in enumerate((X, Y, Z)):
            tokens[rows, p + offset] = tri[:, offset]
            roles[rows, p + offset] = role
        busy_until[rows] = p + 3

    _fill_without_accidental_prefixes(tokens, is_prefix, d_vocab, gen)
    return TokenBatch(tokens=tokens, next_token=next_tokens_of(tokens), roles=roles)


def _fill_without_accidental_prefixes(
    tokens: torch.Tensor, is_prefix: torch.Tensor, d_vocab: int, gen: torch.Generator
) -> None:
    import torch

    n_seqs, seq_len = tokens.shape
    for p in range(seq_len):
        free = tokens[:, p] < 0
        while True:
            rows = free.nonzero().squeeze(1)
            if len(rows) == 0:
                break
            draw = torch.randint(0, d_vocab, (len(rows),), generator=gen)
            bad = torch.zeros(len(rows), dtype=torch.bool)
            if p > 0:
                bad |= is_prefix[tokens[rows, p - 1], draw]
            if p + 1 < seq_len:
                after = tokens[rows, p + 1]
                planted_after = after >= 0
                bad |= planted_after & is_prefix[draw, after.clamp(min=0)]
            ok_rows = rows[~bad]
            tokens[ok_rows, p] = draw[~bad]
            free = tokens[:, p] < 0
