"""The ``prompts`` dataset kind: text templates whose slots are filled with words, tokenized by the model's tokenizer.

Each prompt picks one of ``templates`` (uniformly, seeded) and fills every ``{slot}`` with a word from the
slot's list (``slots`` maps a slot to a list under ``words``); slots that draw from the same list get
distinct words within a prompt (IOI needs A != B). Roles: every slot occurrence (the first occurrence of
``B`` is ``B``, the second ``B2``), ``end`` (the last token) and ``none``. ``next_token`` is the next token
at every position and the ``answer`` token at ``end``; ``counterfactual`` is the token that ``logit_diff``
subtracts there.

Templates may put the slots in different orders (IOI's ABBA "When {A} and {B} ..." beside BABA "When {B} and
{A} ..."), as long as every template fills the same slot occurrences (the same roles) and every prompt has the
same number of tokens. Roles are stored per prompt (``TokenBatch.roles [batch, seq]``): in a mixed dataset role
``A`` is at token 1 of an ABBA prompt and token 3 of a BABA one, so a selection ``{role: A}`` picks each
prompt's own ``A``, while ``indices``/``range`` selections (and the sweep's cells) are absolute positions
that hold different roles in different prompts.

Before any forward pass, every word of every list is tokenized at every place it can appear: each must be one
token of its own and must not move the other tokens of its template, every template must give the same length,
and the answer and the counterfactual must be one token after the prompt. Failures are errors that list the
offending words.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import Field

from circuitcheck.data.batch import NO_TARGET, TokenBatch
from circuitcheck.data.registry import DataContext, DatasetSpec, dataset_kind
from circuitcheck.data.templates import Encoded, Template, encode, has_offsets, parse_template, word_token
from circuitcheck.errors import PlanError
from circuitcheck.spec.base import Seed

if TYPE_CHECKING:  # torch is imported where tokens are built: `validate` loads this module without it
    import torch

END, NONE = "end", "none"
SHOWN_WORDS = 8
WORD_FIX = (
    "IOI-style prompts need single-token words at fixed positions; drop these words from the list, or use a "
    "tokenizer where each is one token"
)
TOKENIZER_FIX = "use a model folder with tokenizer.json (or the tokenizer files transformers reads) beside config.json"

Word = Annotated[str, Field(min_length=1)]


@dataclass(frozen=True)
class Layout:
    """A prompts spec, parsed and checked without a tokenizer."""

    templates: tuple[Template, ...]
    slot_list: dict[str, str]
    lists: dict[str, tuple[str, ...]]
    answer: Template
    counterfactual: Template | None

    @property
    def slots(self) -> tuple[str, ...]:
        return self.templates[0].slots

    @property
    def roles(self) -> tuple[str, ...]:
        return self.templates[0].roles

    @property
    def role_names(self) -> tuple[str, ...]:
        return (NONE, *self.roles, END)

    @property
    def role_slot(self) -> dict[str, str]:
        """Each role's slot (``B2`` -> ``B``); the same in every template (:meth:`PromptsDataset.layout`)."""
        return dict(zip(self.roles, self.slots, strict=True))

    def drawing_from(self, name: str) -> list[str]:
        """The distinct slots of the templates that draw from list ``name``, in order of first appearance."""
        return [s for s in dict.fromkeys(self.slots) if self.slot_list[s] == name]

    def reference(self) -> dict[str, str]:
        """A fill that satisfies every rule: each list's first words, in order."""
        return {s: self.lists[name][i] for name in self.lists for i, s in enumerate(self.drawing_from(name))}


@dataset_kind
class PromptsDataset(DatasetSpec):
    """Text prompts from templates with named slots, tokenized by the model's tokenizer; an answer and a
    counterfactual token at the last position (IOI-style tasks).

    Roles: each slot occurrence (``A``; the second occurrence of ``B`` is ``B2``), ``end`` (the last
    token). Templates may order the slots differently (IOI's ABBA and BABA); roles are then per prompt,
    so ``{role: A}`` selects each prompt's own A. ``logit_diff`` at ``end`` is logit(answer) -
    logit(counterfactual). The ``refill`` corruption refills slot occurrences with fresh words from their lists.
    """

    kind: Literal["prompts"] = "prompts"
    n_seqs: int = Field(gt=0, le=100_000, description="Prompts to draw")
    seed: Seed = Field(description="Seeds each prompt's template and words")
    templates: list[str] = Field(
        min_length=1,
        description="Prompt texts with {slot} fields; each prompt picks one uniformly (seeded). All must fill the "
        "same slots, each as many times, and tokenize to the same length; the order may differ (roles are per prompt)",
    )
    slots: dict[str, str] = Field(description="Slot -> the name of its word list under 'words'")
    words: dict[str, list[Word]] = Field(
        description="Word lists; every word must be one token wherever its slots appear. Slots that share a list "
        "get distinct words within a prompt"
    )
    answer: str = Field(
        min_length=1,
        description="The target at the last position, written as it follows the prompt after a space: a slot "
        "('{A}') or literal text; it must be one token",
    )
    counterfactual: str | None = Field(
        default=None,
        description="The wrong answer ('{B}'): logit_diff at the last position is logit(answer) - "
        "logit(counterfactual)",
    )

    def build(self, ctx: DataContext) -> TokenBatch:
        tokenizer = _tokenizer(ctx)
        layout = self.layout()
        check_tokens(layout, tokenizer, ctx.d_vocab)
        return fill_prompts(layout, tokenizer, self.n_seqs, self.seed, self.model_dump())

    def layout(self) -> Layout:
        templates = tuple(parse_template(t, ("dataset", "templates", j)) for j, t in enumerate(self.templates))
        _check_slots(templates, self.slots, self.words)
        first = templates[0]
        for j, t in enumerate(templates[1:], start=1):
            _check_same_roles(j, t, first)
        answer = _target(self.answer, "answer", first)
        counterfactual = None if self.counterfactual is None else _target(self.counterfactual, "counterfactual", first)
        lists = {name: tuple(words) for name, words in self.words.items()}
        layout = Layout(templates, dict(self.slots), lists, answer, counterfactual)
        for name, words in lists.items():
            _check_list(layout, name, words)
        return layout


def _check_same_roles(j: int, t: Template, first: Template) -> None:
    """Template ``j`` fills the slot occurrences of template 0, in any order: every prompt has every role."""
    if set(t.roles) == set(first.roles):
        return
    lacks = [r for r in first.roles if r not in t.roles]
    adds = [r for r in t.roles if r not in first.roles]
    diff = "; ".join(
        part
        for part in (f"it lacks {', '.join(lacks)}" if lacks else "", f"it adds {', '.join(adds)}" if adds else "")
        if part
    )
    raise PlanError(
        ("dataset", "templates", j),
        f"template {j} fills the slot occurrences {', '.join(t.roles) or 'none'}; template 0 fills "
        f"{', '.join(first.roles) or 'none'} ({diff}): every template must fill the same slots, each as many "
        "times (the order may differ), so that every prompt has every role",
        f"give template {j} the slots of template 0 ({', '.join('{' + s + '}' for s in first.slots) or 'none'}), "
        "in any order, or split the templates into separate hypothesis files",
    )


def _tokenizer(ctx: DataContext) -> Any:
    model = ctx.model_name or "the model"
    if ctx.tokenizer is None:
        raise PlanError(
            ("dataset", "kind"),
            f"the 'prompts' dataset needs the model's tokenizer, and {model} has none",
            TOKENIZER_FIX,
        )
    if not has_offsets(ctx.tokenizer):
        raise PlanError(
            ("dataset", "kind"),
            f"the 'prompts' dataset finds each slot's token through character offsets, which the tokenizer of "
            f"{model} ({type(ctx.tokenizer).__name__}) does not report",
            "save the model with a fast tokenizer (tokenizer.json)",
        )
    return ctx.tokenizer


def _check_slots(templates: tuple[Template, ...], slots: dict[str, str], words: dict[str, list[str]]) -> None:
    for j, t in enumerate(templates):
        missing = [s for s in dict.fromkeys(t.slots) if s not in slots]
        if missing:
            raise PlanError(
                ("dataset", "templates", j),
                f"template {j} has the slot(s) {', '.join(missing)}, which 'slots' gives no word list",
                f"add e.g. '{missing[0]}: <list>' under slots (lists: {', '.join(words) or 'none'})",
            )
    for slot, name in slots.items():
        if slot in (END, NONE):
            raise PlanError(
                ("dataset", "slots", slot), f"{slot!r} is a built-in role, not a slot name", "rename the slot"
            )
        if name not in words:
            raise PlanError(
                ("dataset", "slots", slot),
                f"slot {slot!r} draws from {name!r}, which 'words' does not define",
                f"add '{name}: [...]' under words, or use one of: {', '.join(words) or 'none'}",
            )
    roles = templates[0].roles
    clash = [r for r in roles if r != r.rstrip("0123456789") and r in slots]
    if clash:
        raise PlanError(
            ("dataset", "slots", clash[0]),
            f"the role {clash[0]!r} would name both a slot and a repeated occurrence of slot "
            f"{clash[0].rstrip('0123456789')!r}",
            "rename the slot (a slot name ending in a digit clashes with repeated occurrences)",
        )


def _target(text: str, field: str, first: Template) -> Template:
    target = parse_template(text.strip(), ("dataset", field))
    unknown = [s for s in target.slots if s not in first.slots]
    if unknown:
        raise PlanError(
            ("dataset", field),
            f"the {field} {text!r} names the slot(s) {', '.join(unknown)}, which the templates do not fill",
            f"use one of: {', '.join('{' + s + '}' for s in dict.fromkeys(first.slots)) or 'none (no slots)'}",
        )
    return target


def _check_list(layout: Layout, name: str, words: tuple[str, ...]) -> None:
    dupes = sorted({w for w in words if words.count(w) > 1})
    if dupes:
        raise PlanError(
            ("dataset", "words", name), f"the list {name!r} repeats {_quoted(dupes)}", "list each word once"
        )
    slots = layout.drawing_from(name)
    if len(words) < len(slots):
        raise PlanError(
            ("dataset", "words", name),
            f"the slots {', '.join(slots)} draw distinct words from {name!r}, which has {len(words)}",
            f"give {name!r} at least {len(slots)} words",
        )


def _quoted(words: Sequence[str]) -> str:
    shown = ", ".join(repr(w) for w in words[:SHOWN_WORDS])
    return shown + (f" and {len(words) - SHOWN_WORDS} more" if len(words) > SHOWN_WORDS else "")


def check_tokens(layout: Layout, tokenizer: Any, d_vocab: int) -> None:
    """Tokenize every word of every list at every occurrence of its slots, in every template, and each
    template itself; raise a :class:`PlanError` listing every word that does not fit."""
    ref = layout.reference()
    texts: list[str] = []
    spans: list[list[tuple[int, int]]] = []
    cases: list[tuple[int, int, str] | None] = []  # (template, occurrence, word); None: the reference fill
    for j, t in enumerate(layout.templates):
        base = [ref[s] for s in t.slots]
        for i, word in [(-1, "")] + [(i, w) for i, s in enumerate(t.slots) for w in layout.lists[layout.slot_list[s]]]:
            fill = base if i < 0 else [*base[:i], word, *base[i + 1 :]]
            text, where = t.render(fill)
            texts.append(text)
            spans.append(where)
            cases.append(None if i < 0 else (j, i, word))
    encoded = encode(tokenizer, texts, spans)
    refs = [e for e, c in zip(encoded, cases, strict=True) if c is None]
    unk = getattr(tokenizer, "unk_token_id", None)
    _check_templates(refs, [t for t, c in zip(texts, cases, strict=True) if c is None], unk)
    problems: dict[str, dict[str, list[str]]] = {}
    for e, case in zip(encoded, cases, strict=True):
        if case is None:
            continue
        j, i, word = case
        why = _word_problem(e, refs[j], i, unk, d_vocab)  # against its own template: positions differ across them
        if why is not None:
            listed = problems.setdefault(layout.slot_list[layout.templates[j].slots[i]], {}).setdefault(why, [])
            if word not in listed:
                listed.append(word)
    if problems:
        name = next(iter(problems))
        text = "; ".join(f"{n} {_quoted(ws)} {why}" for n, whys in problems.items() for why, ws in whys.items())
        raise PlanError(("dataset", "words", name), text, WORD_FIX)
    _check_target(layout, layout.answer, "answer", tokenizer, ref, d_vocab)
    if layout.counterfactual is not None:
        _check_target(layout, layout.counterfactual, "counterfactual", tokenizer, ref, d_vocab)


def _word_problem(e: Encoded, ref: Encoded, i: int, unk: int | None, d_vocab: int) -> str | None:
    pos = e.positions[i]
    if pos is None:
        n = e.n_tokens[i]
        return (
            f"tokenize to {n} tokens each"
            if n > 1
            else "are not tokens of their own (a token holds them and the text beside them)"
        )
    if unk is not None and e.ids[pos] == unk:
        return "tokenize to the unknown token"
    if e.ids[pos] >= d_vocab:
        return f"get token ids outside the model's vocabulary (d_vocab {d_vocab})"
    if len(e.ids) > len(ref.ids):  # one token of its own, but the space before it became a token too
        return f"tokenize to {1 + len(e.ids) - len(ref.ids)} tokens each"
    moved = any(a is not None and b is not None and a != b for a, b in zip(e.positions, ref.positions, strict=True))
    if len(e.ids) != len(ref.ids) or moved:
        return "move the other tokens of the prompt"
    return None


def _check_templates(refs: list[Encoded], texts: list[str], unk: int | None) -> None:
    """Each template alone, and the same length for all; each role's position may differ between templates
    (the roles tensor is per prompt)."""
    first = refs[0]
    for j, (e, text) in enumerate(zip(refs, texts, strict=True)):
        if None in e.positions:
            continue  # a word of the reference fill that is not one token: the word check names it
        unknown = [
            text[a:b]
            for k, (i, (a, b)) in enumerate(zip(e.ids, e.offsets, strict=True))
            if i == unk and k not in e.positions
        ]
        if unk is not None and unknown:
            raise PlanError(
                ("dataset", "templates", j),
                f"template {j} has text the tokenizer does not know: it tokenizes {_quoted(unknown)} to the unknown "
                "token",
                "reword the template with words the model's tokenizer knows",
            )
        if len(e.ids) != len(first.ids):
            raise PlanError(
                ("dataset", "templates", j),
                f"template {j} tokenizes to {len(e.ids)} tokens, template 0 to {len(first.ids)}: every prompt must "
                "have the same length, so that positions line up across prompts",
                "reword the templates so that they tokenize to the same number of tokens",
            )
        if len(e.ids) - 1 in e.positions:
            raise PlanError(
                ("dataset", "templates", j),
                f"template {j} ends with a slot; its last token is the 'end' role, where the answer is predicted",
                "end every template with text after the last slot (e.g. '... gave a {object} to')",
            )


def _check_target(
    layout: Layout, target: Template, field: str, tokenizer: Any, ref: dict[str, str], d_vocab: int
) -> None:
    """The answer (or counterfactual) is one known token after each template, for every word of its slots."""
    prompts, texts, cases = [], [], []
    for t in layout.templates:
        prompt = t.render([ref[s] for s in t.slots])[0]
        fills = [dict(ref)] + [
            ref | {s: w} for s in dict.fromkeys(target.slots) for w in layout.lists[layout.slot_list[s]]
        ]
        for fill in fills:
            prompts.append(prompt)
            texts.append(target.render([fill[s] for s in target.slots])[0])
            cases.append(texts[-1])
    unk = getattr(tokenizer, "unk_token_id", None)
    bad: dict[str, list[str]] = {}
    for got, text in zip(word_token(tokenizer, prompts, texts), cases, strict=True):
        why = None
        if len(got) != 1:
            why = f"{len(got)} tokens" if got else "not a token of its own after the prompt"
        elif unk is not None and got[0] == unk:
            why = "the unknown token"
        elif got[0] >= d_vocab:
            why = f"a token id outside the model's vocabulary (d_vocab {d_vocab})"
        if why is not None and text not in bad.setdefault(why, []):
            bad[why].append(text)
    if bad:
        shown = "; ".join(f"{_quoted(ts)} {'is' if len(ts) == 1 else 'are'} {why}" for why, ts in bad.items())
        raise PlanError(
            ("dataset", field),
            f"the {field} {target.text!r} must be one token after the prompt (as the text that follows it after a "
            f"space): {shown}",
            "drop those words from their list, or use a tokenizer where each is one token",
        )


def fill_prompts(layout: Layout, tokenizer: Any, n_seqs: int, seed: int, params: dict[str, object]) -> TokenBatch:
    """``n_seqs`` prompts from ``layout``, drawn from ``seed``; words already checked by :func:`check_tokens`."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    which = torch.randint(len(layout.templates), (n_seqs,), generator=gen).tolist()
    picks: dict[str, list[int]] = {}
    for name, words in layout.lists.items():
        slots = layout.drawing_from(name)
        if slots:  # distinct words per prompt: the first of a random order of the list
            order = torch.rand(n_seqs, len(words), generator=gen).argsort(1)[:, : len(slots)]
            picks |= {s: order[:, k].tolist() for k, s in enumerate(slots)}
    fills = [{s: layout.lists[layout.slot_list[s]][picks[s][b]] for s in picks} for b in range(n_seqs)]
    refill = SlotRefill(
        layout, tokenizer, tuple(which), {s: tuple(p) for s, p in picks.items()}, template_positions(layout, tokenizer)
    )
    texts, tokens = refill.tokens([{r: f[s] for r, s in layout.role_slot.items()} for f in fills])
    answers = _target_ids(layout.answer, "answer", tokenizer, texts, fills)
    seq = tokens.shape[1]
    roles = torch.zeros_like(tokens)
    picked = torch.tensor(which, dtype=torch.long)
    for j, at in enumerate(refill.at):  # per template: a role's position differs between slot orders
        rows = picked == j
        for role, pos in at.items():
            roles[rows, pos] = layout.role_names.index(role)
    roles[:, -1] = layout.role_names.index(END)
    nxt = torch.full_like(tokens, NO_TARGET)
    nxt[:, :-1] = tokens[:, 1:]
    nxt[:, -1] = answers
    counterfactual = None
    if layout.counterfactual is not None:
        counterfactual = torch.full_like(tokens, NO_TARGET)
        counterfactual[:, -1] = _target_ids(layout.counterfactual, "counterfactual", tokenizer, texts, fills)
    params = params | {"seq_len": seq, "roles": list(layout.role_names)}
    return TokenBatch(
        tokens, nxt, roles, params, role_names=layout.role_names, counterfactual=counterfactual, refill=refill
    )


def template_positions(layout: Layout, tokenizer: Any) -> tuple[dict[str, int], ...]:
    """Per template, each role's token position in its reference fill (every fill keeps them: :func:`check_tokens`)."""
    ref = layout.reference()
    rendered = [t.render([ref[s] for s in t.slots]) for t in layout.templates]
    encoded = encode(tokenizer, [r[0] for r in rendered], [r[1] for r in rendered])
    return tuple(
        {r: p for r, p in zip(t.roles, e.positions, strict=True) if p is not None}
        for t, e in zip(layout.templates, encoded, strict=True)
    )


def _target_ids(
    target: Template, field: str, tokenizer: Any, prompts: list[str], fills: list[dict[str, str]]
) -> torch.Tensor:
    import torch

    texts = [target.render([f[s] for s in target.slots])[0] for f in fills]
    got = word_token(tokenizer, prompts, texts)
    bad = [b for b, g in enumerate(got) if len(g) != 1]
    if bad:  # check_tokens tried every word after every template; a fill can still tokenize differently
        b = bad[0]
        raise PlanError(
            ("dataset", field),
            f"the {field} {texts[b]!r} is {len(got[b])} tokens after the prompt {prompts[b]!r} (prompt {b})",
            WORD_FIX,
        )
    return torch.tensor([g[0] for g in got], dtype=torch.long)


@dataclass(frozen=True)
class SlotRefill:
    """The prompts' template choices and words (word indices per slot), so that a ``refill`` corruption
    rebuilds them with some occurrences refilled: :class:`circuitcheck.data.batch.Refill`."""

    layout: Layout
    tokenizer: Any
    which: tuple[int, ...]
    picks: dict[str, tuple[int, ...]]
    at: tuple[dict[str, int], ...]
    """Per template, each role's token position (:func:`template_positions`); prompt ``b`` uses ``at[which[b]]``."""

    @property
    def occurrences(self) -> tuple[str, ...]:
        return self.layout.roles

    def problem(self, occurrences: Sequence[str]) -> str | None:
        for name, words in self.layout.lists.items():
            slots = self.layout.drawing_from(name)
            wanted = [r for r, s in self.layout.role_slot.items() if r in occurrences and s in slots]
            if len(wanted) > len(words) - len(slots):
                return (
                    f"refilling {', '.join(wanted)} needs {len(wanted)} words of {name!r} besides the "
                    f"{len(slots)} each prompt already uses ({', '.join(slots)}); it has {len(words)}"
                )
        return None

    def __call__(self, occurrences: Sequence[str], seed: int) -> torch.Tensor:
        """The prompts with ``occurrences`` refilled: fresh words from each one's list, distinct from each other
        and from the words the prompt already takes from that list. Words are kept by role, so each prompt's
        own template puts them at its own positions."""
        import torch

        why = self.problem(occurrences)
        if why is not None:
            raise ValueError(why)
        n = len(self.which)
        layout = self.layout
        words = [
            {r: layout.lists[layout.slot_list[s]][self.picks[s][b]] for r, s in layout.role_slot.items()}
            for b in range(n)
        ]
        gen = torch.Generator().manual_seed(seed)
        for name, pool in layout.lists.items():
            wanted = [r for r, s in layout.role_slot.items() if r in occurrences and layout.slot_list[s] == name]
            if not wanted:
                continue
            used = torch.tensor([self.picks[s] for s in layout.drawing_from(name)], dtype=torch.long).T
            scores = torch.rand(n, len(pool), generator=gen).scatter(1, used, 2.0)  # used words sort last
            fresh = scores.argsort(1)[:, : len(wanted)].tolist()
            for b in range(n):
                for k, r in enumerate(wanted):
                    words[b][r] = pool[fresh[b][k]]
        return self.tokens(words)[1]

    def tokens(self, words: list[dict[str, str]]) -> tuple[list[str], torch.Tensor]:
        """The texts of the prompts with ``words[b][role]`` at each role of their template, and their tokens
        ``[n, seq]``."""
        import torch

        templates = [self.layout.templates[j] for j in self.which]
        rendered = [t.render([w[r] for r in t.roles]) for t, w in zip(templates, words, strict=True)]
        encoded = encode(self.tokenizer, [r[0] for r in rendered], [r[1] for r in rendered])
        seq = len(encoded[0].ids)
        for b, (t, e) in enumerate(zip(templates, encoded, strict=True)):
            want = tuple(self.at[self.which[b]].get(r) for r in t.roles)
            if (len(e.ids), e.positions) != (seq, want):
                raise PlanError(
                    ("dataset", "templates", self.which[b]),
                    f"the prompt {rendered[b][0]!r} tokenizes to {len(e.ids)} tokens with its slots at "
                    f"{list(e.positions)}; the first prompt has {seq} tokens, and template {self.which[b]} puts its "
                    f"slots at {list(want)}",
                    WORD_FIX,
                )
        return [r[0] for r in rendered], torch.tensor([e.ids for e in encoded], dtype=torch.long)
