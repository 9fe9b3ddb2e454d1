"""Text templates with named slots (``"When {A} and {B} went to the {place}"``), and tokenizing their fills.

Used by the ``prompts`` dataset kind (:mod:`circuitcheck.data.prompts`). A template is parsed once into
its literal pieces and its slot occurrences; each occurrence is a role: the first occurrence of slot ``B``
is ``B``, the second ``B2``, the third ``B3``. Tokenizing works with any ``transformers`` fast tokenizer:
a slot's token is found through the offsets of the tokens, not by assuming one token per word.
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from circuitcheck.errors import PlanError

__all__ = ["Encoded", "Template", "encode", "occurrence_roles", "parse_template", "word_token"]

SLOT_FIX = "write a slot as {name} (letters, digits, _); a literal brace as {{ or }}"


@dataclass(frozen=True)
class Template:
    """A parsed template: ``pieces[i]`` is the literal text before occurrence ``i``; ``pieces[-1]`` ends it."""

    text: str
    pieces: tuple[str, ...]
    slots: tuple[str, ...]

    @property
    def roles(self) -> tuple[str, ...]:
        return occurrence_roles(self.slots)

    def render(self, words: Sequence[str]) -> tuple[str, list[tuple[int, int]]]:
        """The text with ``words[i]`` at occurrence ``i``, and each occurrence's character span."""
        parts: list[str] = []
        spans: list[tuple[int, int]] = []
        at = 0
        for piece, word in zip(self.pieces, words, strict=False):
            at += len(piece)
            spans.append((at, at + len(word)))
            at += len(word)
            parts += [piece, word]
        parts.append(self.pieces[-1])
        return "".join(parts), spans


def occurrence_roles(slots: Sequence[str]) -> tuple[str, ...]:
    """``(A, B, place, B)`` -> ``(A, B, place, B2)``."""
    seen: dict[str, int] = {}
    roles = []
    for slot in slots:
        seen[slot] = seen.get(slot, 0) + 1
        roles.append(slot if seen[slot] == 1 else f"{slot}{seen[slot]}")
    return tuple(roles)


def parse_template(text: str, path: tuple[str | int, ...]) -> Template:
    pieces: list[str] = []
    slots: list[str] = []
    literal = ""
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as err:  # a lone brace
        raise PlanError(path, f"cannot read the template {text!r}: {err}", SLOT_FIX) from None
    for lit, name, spec, conversion in parsed:
        literal += lit
        if name is None:
            continue
        if not name.isidentifier() or spec or conversion:
            shown = name + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "")
            raise PlanError(path, f"the template {text!r} has a slot {{{shown}}} that is not a plain name", SLOT_FIX)
        pieces.append(literal)
        literal = ""
        slots.append(name)
    pieces.append(literal)
    return Template(text, tuple(pieces), tuple(slots))


@dataclass(frozen=True)
class Encoded:
    """One tokenized text: its ids, and for each slot occurrence the one token that holds it (or why none)."""

    ids: tuple[int, ...]
    positions: tuple[int | None, ...]
    """The token of each occurrence; None where the word is not exactly one token of its own."""
    n_tokens: tuple[int, ...]
    """How many tokens each occurrence's word overlaps."""
    offsets: tuple[tuple[int, int], ...] = ()
    """Each token's character span in the text."""


def encode(tokenizer: Any, texts: list[str], spans: list[list[tuple[int, int]]]) -> list[Encoded]:
    """Tokenize ``texts`` (no special tokens) and find the token of each character span.

    A word is one token of its own when exactly one token overlaps it and that token is the word,
    give or take the whitespace before it (GPT-2's ``ĠJohn`` spans " John"); a token that also holds
    the text around the word ("John," as one token) does not count.
    """
    out = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True)
    encoded = []
    for text, ids, offsets, word_spans in zip(texts, out["input_ids"], out["offset_mapping"], spans, strict=True):
        positions: list[int | None] = []
        counts: list[int] = []
        for s, e in word_spans:
            hits = [i for i, (a, b) in enumerate(offsets) if b > a and a < e and b > s]
            counts.append(len(hits))
            own = len(hits) == 1 and text[offsets[hits[0]][0] : offsets[hits[0]][1]].strip() == text[s:e]
            positions.append(hits[0] if own else None)
        encoded.append(Encoded(tuple(ids), tuple(positions), tuple(counts), tuple(map(tuple, offsets))))
    return encoded


def word_token(tokenizer: Any, prompts: list[str], texts: list[str]) -> list[tuple[int, ...]]:
    """The tokens that ``texts[i]`` adds when it follows ``prompts[i]`` after one space (how an answer
    is written after its prompt); empty where the prompt's own tokens change."""
    whole = tokenizer([f"{p} {t}" for p, t in zip(prompts, texts, strict=True)], add_special_tokens=False)["input_ids"]
    alone = tokenizer(prompts, add_special_tokens=False)["input_ids"]
    return [tuple(w[len(a) :]) if list(w[: len(a)]) == list(a) else () for w, a in zip(whole, alone, strict=True)]


def has_offsets(tokenizer: Any) -> bool:
    """Whether the tokenizer reports character offsets (``transformers`` fast tokenizers do)."""
    return bool(getattr(tokenizer, "is_fast", False))
