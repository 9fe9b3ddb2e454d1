"""The ``prompts`` dataset kind, the counterfactual ``logit_diff`` and the ``refill`` corruption.

Tokenizers are built here: a word-level one (WordLevel + Whitespace, whose tokens are the words, so a
naive split of the text is an independent tokenizer to check against) and a GPT-2-style byte-level BPE
trained on the prompts (tokens with a leading space, "ĠJohn"). The model is a tiny random GPT-2 saved as a
Hugging Face folder with the word-level tokenizer beside it.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from circuitcheck.claims.corruption import RefillSlots
from circuitcheck.data.batch import NO_TARGET
from circuitcheck.data.prompts import PromptsDataset
from circuitcheck.data.registry import DataContext
from circuitcheck.errors import CircuitcheckError, PlanError
from circuitcheck.metrics import metrics

NAMES = ["John", "Mary", "Tom", "Anna", "Bob", "Kate", "Paul", "Lisa"]
PLACES = ["store", "park", "school"]
OBJECTS = ["ball", "book", "drink"]
TEMPLATES = [
    "When {A} and {B} went to the {place}, {B} gave a {object} to",
    "After {A} and {B} went to the {place}, {B} gave a {object} to",
]
SLOTS = {"A": "names", "B": "names", "place": "places", "object": "objects"}
WORDS = {"names": NAMES, "places": PLACES, "objects": OBJECTS}
OTHER = ["When", "After", "Then", "and", "went", "to", "the", "gave", "a", ",", "-", "then", "Anne", "Marie", "Jean",
         "Luc"]
VOCAB = ["[UNK]", *OTHER, *NAMES, *PLACES, *OBJECTS]


def spec(**changes: object) -> PromptsDataset:
    fields: dict[str, object] = {
        "kind": "prompts", "n_seqs": 40, "seed": 3, "templates": TEMPLATES, "slots": SLOTS, "words": WORDS,
        "answer": "{A}", "counterfactual": "{B}",
    }
    return PromptsDataset(**(fields | changes))


def word_tokenizer() -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(VOCAB)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]")


def bpe_tokenizer() -> PreTrainedTokenizerFast:
    """Byte-level BPE as GPT-2's: the common names become one token each (" John" -> "ĠJohn"); rare
    long names stay several."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    corpus = [t.format(A=a, B=b, place=p, object=o) + " " + a for t in TEMPLATES for a in NAMES for b in NAMES
              for p in PLACES for o in OBJECTS]
    trainer = trainers.BpeTrainer(vocab_size=400, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok)


def context(tokenizer: object, d_vocab: int = len(VOCAB), tmp: Path = Path(".")) -> DataContext:
    return DataContext({}, tmp, d_vocab, 64, tokenizer=tokenizer, model_name="tiny")


def naive_ids(text: str) -> list[int]:
    """An independent word-level tokenizer: split on spaces, and a comma is a word of its own."""
    return [VOCAB.index(w) for w in text.replace(",", " ,").split()]


@pytest.fixture(scope="module")
def words_tok() -> PreTrainedTokenizerFast:
    return word_tokenizer()


# --- filling and roles -----------------------------------------------------------------------------------------


def test_prompts_fill_deterministically_from_the_seed(words_tok):
    a, b = spec().build(context(words_tok)), spec().build(context(words_tok))
    assert torch.equal(a.tokens, b.tokens)
    assert not torch.equal(a.tokens, spec(seed=4).build(context(words_tok)).tokens)


def test_each_prompt_is_a_template_filled_with_distinct_words(words_tok):
    batch = spec(n_seqs=200).build(context(words_tok))
    pattern = re.compile("^(?:When|After) (\\w+) and (\\w+) went to the (\\w+) , (\\w+) gave a (\\w+) to$")
    used_templates = set()
    for row in batch.tokens.tolist():
        text = " ".join(VOCAB[t] for t in row)
        a, b, place, b2, obj = pattern.fullmatch(text).groups()  # type: ignore[union-attr]
        assert a in NAMES and b in NAMES and a != b and b2 == b and place in PLACES and obj in OBJECTS
        template = TEMPLATES[0] if text.startswith("When") else TEMPLATES[1]
        used_templates.add(template)
        assert row == naive_ids(template.format(A=a, B=b, place=place, object=obj))
    assert used_templates == set(TEMPLATES)


def test_roles_point_at_the_slot_words_and_the_targets_at_the_answer(words_tok):
    batch = spec().build(context(words_tok))
    assert batch.role_names == ("none", "A", "B", "place", "B2", "object", "end")
    for row, roles, nxt, cf in zip(batch.tokens, batch.roles, batch.next_token, batch.counterfactual, strict=True):
        text = [VOCAB[t] for t in row.tolist()]
        at = {batch.role_names[c]: p for p, c in enumerate(roles.tolist()) if c}
        assert at == {"A": 1, "B": 3, "place": 7, "B2": 9, "object": 12, "end": 13}
        assert text[at["A"]] in NAMES and text[at["B"]] == text[at["B2"]] and text[-1] == "to"
        assert nxt[:-1].tolist() == row[1:].tolist()  # language modelling everywhere else
        assert nxt[-1] == row[at["A"]] and cf[-1] == row[at["B"]]  # answer {A}, counterfactual {B}
        assert (cf[:-1] == NO_TARGET).all()


def test_gpt2_style_bpe_answer_is_the_leading_space_token():
    tok = bpe_tokenizer()
    batch = spec().build(context(tok, d_vocab=len(tok)))
    pieces = [tok.convert_ids_to_tokens(row) for row in batch.tokens.tolist()]
    a, b = batch.role_names.index("A"), batch.role_names.index("B")
    for row, roles, nxt, cf in zip(pieces, batch.roles, batch.next_token, batch.counterfactual, strict=True):
        io = row[roles.tolist().index(a)]
        s = row[roles.tolist().index(b)]
        assert io.startswith("Ġ") and io[1:] in NAMES and s[1:] in NAMES
        assert tok.convert_ids_to_tokens(int(nxt[-1])) == io and tok.convert_ids_to_tokens(int(cf[-1])) == s
    assert batch.tokens.shape[1] == len(tok(TEMPLATES[0].format(A="John", B="Mary", place="park", object="ball"))[
        "input_ids"])


def test_gpt2_style_bpe_names_a_multi_token_word():
    tok = bpe_tokenizer()
    names = [*NAMES, "Christopher", "Elizabeth"]
    with pytest.raises(PlanError, match=r"names 'Christopher'(, 'Elizabeth')? tokenize to \d+ tokens each") as err:
        spec(words={**WORDS, "names": names}).build(context(tok, d_vocab=len(tok)))
    assert err.value.path == ("dataset", "words", "names") and "'Elizabeth'" in err.value.message


# --- refusals, without a model ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("changes", "path", "message"), [
    ({"templates": [TEMPLATES[0], "When {A} and {B} went to the {place}, {A} gave a {object} to"]},
     ("dataset", "templates", 1), "it lacks B2; it adds A2.*must fill the same slots, each as many times"),
    ({"templates": [TEMPLATES[0], "Then , When {A} and {B} went to the {place}, {B} gave a {object} to"]},
     ("dataset", "templates", 1), "template 1 tokenizes to 16 tokens, template 0 to 14"),
    ({"templates": ["When {A} and {B} went to the {place}, {B} gave a {thing} to"]},
     ("dataset", "templates", 0), "slot.s. thing, which 'slots' gives no word list"),
    ({"answer": "{C}"}, ("dataset", "answer"), "names the slot.s. C, which the templates do not fill"),
    ({"answer": "{A} then"}, ("dataset", "answer"), "must be one token after the prompt"),
    ({"counterfactual": "ball book"}, ("dataset", "counterfactual"), "'ball book' is 2 tokens"),
    ({"words": {**WORDS, "names": ["John"]}}, ("dataset", "words", "names"), "draw distinct words"),
    ({"words": {**WORDS, "names": [*NAMES, "Anne-Marie", "Jean-Luc"]}}, ("dataset", "words", "names"),
     "names 'Anne-Marie', 'Jean-Luc' tokenize to 3 tokens each"),
    ({"words": {**WORDS, "places": [*PLACES, "moon"]}}, ("dataset", "words", "places"),
     "places 'moon' tokenize to the unknown token"),
    ({"templates": ["When {A} and {B} went to the {place}, {B} gave a {object} to {A}"]},
     ("dataset", "templates", 0), "ends with a slot"),
    ({"templates": ["When {A} and {B} went to the {place}, {B} gave a {object} to her"]},
     ("dataset", "templates", 0), "'her' to the unknown token"),
])
def test_bad_prompts_are_refused_with_the_field(words_tok, changes, path, message):
    with pytest.raises(PlanError, match=message) as err:
        spec(**changes).build(context(words_tok))
    assert err.value.path == path


def test_token_ids_beyond_the_models_vocabulary_are_refused(words_tok):
    with pytest.raises(PlanError, match=r"outside the model's vocabulary \(d_vocab 20\)"):
        spec().build(context(words_tok, d_vocab=20))


def test_no_tokenizer_names_the_model_and_the_fix():
    with pytest.raises(PlanError, match="tiny has none") as err:
        spec().build(context(None))
    assert "tokenizer.json" in (err.value.fix or "")


# --- refill ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("slots", [["A", "B", "B2"], ["B2"], ["place"]])
def test_refill_changes_exactly_the_listed_slots(words_tok, slots):
    batch = spec().build(context(words_tok))
    assert batch.refill is not None
    corrupted = batch.refill(slots, 7)
    assert torch.equal(corrupted, batch.refill(slots, 7))
    listed = torch.zeros_like(batch.roles, dtype=torch.bool)
    for slot in slots:
        listed |= batch.role_mask(slot)
    assert torch.equal(corrupted != batch.tokens, listed)  # every listed slot changes, nothing else does
    for old, new, roles in zip(batch.tokens.tolist(), corrupted.tolist(), batch.roles.tolist(), strict=True):
        fresh = [VOCAB[new[p]] for p, c in enumerate(roles) if batch.role_names[c] in slots]
        pool = NAMES if slots[0] != "place" else PLACES
        original = {VOCAB[old[p]] for p, c in enumerate(roles) if batch.role_names[c] in ("A", "B", "place")}
        assert len(set(fresh)) == len(fresh) and set(fresh) <= set(pool) and not set(fresh) & original


def test_refill_with_too_few_words_left_is_refused(words_tok):
    batch = spec(words={**WORDS, "places": ["store", "park"]}).build(context(words_tok))
    assert batch.refill is not None
    assert batch.refill.problem(["A", "B", "B2"]) is None and batch.refill.problem(["place"]) is None
    batch = spec(words={**WORDS, "names": NAMES[:4]}).build(context(words_tok))
    assert "refilling A, B, B2 needs 3 words of 'names' besides the 2" in (batch.refill.problem(["A", "B", "B2"]) or "")


def test_refill_spec_is_a_corruption_scheme():
    assert RefillSlots(scheme="refill", slots=["A"], seed=1).describe() == "refill of slots A (seed 1)"


# --- logit_diff with a counterfactual --------------------------------------------------------------------------


def test_logit_diff_subtracts_the_counterfactual_where_one_is_named():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 9, generator=gen)
    targets = torch.tensor([0, 1, 2, 3, 4, 5])
    cf = torch.tensor([3, NO_TARGET, 8, NO_TARGET, 4, 0])
    got = metrics.get("logit_diff")(logits, targets, torch.empty(0), cf)
    for i in range(6):
        row = logits[i].tolist()
        want = (row[targets[i]] - row[cf[i]] if cf[i] >= 0
                else row[targets[i]] - max(v for j, v in enumerate(row) if j != targets[i]))
        assert got[i].item() == pytest.approx(want, abs=1e-6)
    assert torch.equal(metrics.get("logit_diff")(logits, targets, torch.empty(0)),
                       metrics.get("logit_diff")(logits, targets, torch.empty(0), torch.full((6,), NO_TARGET)))


# --- a tiny model, end to end ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hf_folder(tmp_path_factory, words_tok) -> Path:
    from transformers import GPT2Config, GPT2LMHeadModel

    folder = tmp_path_factory.mktemp("tiny-gpt2")
    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=len(VOCAB), n_positions=32, n_embd=32, n_layer=2, n_head=2, bos_token_id=0,
                     eos_token_id=0)
    GPT2LMHeadModel(cfg).save_pretrained(folder)
    words_tok.save_pretrained(folder)
    return folder


HYPOTHESIS = """\
version: 1
name: ioi-tiny
model: {model}
dataset:
  kind: prompts
  n_seqs: 24
  seed: 3
  templates:
    - "When {{A}} and {{B}} went to the {{place}}, {{B}} gave a {{object}} to"
    - "After {{A}} and {{B}} went to the {{place}}, {{B}} gave a {{object}} to"
  slots: {{A: names, B: names, place: places, object: objects}}
  words:
    names: {names}
    places: [store, park, school]
    objects: [ball, book, drink]
  answer: "{answer}"
  counterfactual: "{{B}}"
positions:
  IO: {{role: A}}
  S1: {{role: B}}
  S2: {{role: B2}}
  end: {{role: end}}
claims:
  - id: P1
    statement: Patching the last block's output at the end restores the logit difference.
    kind: activation_patching
    corruption: {{scheme: refill, slots: {slots}, seed: 7}}
    patch: [blocks.1.hook_resid_post]
    patch_at: end
    positions: end
    metric: logit_diff
    threshold: {{at_least: 0.5}}
    allow_vacuous: true
    vacuous_reason: patching the residual stream at the scored position restores it by construction
  - id: P2
    statement: Patching the last MLP's output at the end restores part of the logit difference.
    kind: activation_patching
    corruption: {{scheme: refill, slots: {slots}, seed: 7}}
    patch: [blocks.1.hook_mlp_out]
    patch_at: end
    positions: end
    metric: logit_diff
    threshold: {{at_least: 0.5}}
  - id: A1
    statement: Zeroing the last MLP at the end changes the logit difference.
    kind: ablation
    mode: necessity
    components: [mlp1]
    method: zero
    ablate_at: end
    positions: end
    metric: logit_diff
    effect: absolute_drop
    threshold: {{at_least: 0.0}}
  - id: I1
    statement: Refilling the place leaves the top prediction at the end.
    kind: independence
    resample: {{scheme: refill, slots: [place], seed: 5}}
    positions: end
    metric: top1_agreement
    threshold: {{at_least: 0.5}}
"""


def write(tmp_path: Path, model: Path | str, *, names: str = str(NAMES).replace("'", ""), answer: str = "{A}",
          slots: str = "[A, B, B2]") -> Path:
    path = tmp_path / "ioi.yaml"
    path.write_text(HYPOTHESIS.format(model=model, names=names, answer=answer, slots=slots))
    return path


def line_of(path: Path, text: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), start=1) if text in line)


def test_logit_diff_at_end_is_answer_minus_counterfactual_by_hand(hf_folder, tmp_path, words_tok):
    from circuitcheck.api import check
    from circuitcheck.plan.compile import compile_file

    path = write(tmp_path, hf_folder)
    plan = compile_file(path)
    batch = plan.batch
    model = plan.loaded.model
    mlp = "blocks.1.hook_mlp_out"

    def at_end(value: torch.Tensor | None):  # a hook writing `value` (None: zeros) at the last position
        def hook(act: torch.Tensor, hook: object) -> torch.Tensor:
            act = act.clone()
            act[:, -1] = 0 if value is None else value[:, -1]
            return act
        return hook

    with torch.no_grad():
        clean_logits, cache = model.run_with_cache(batch.tokens)
        refilled = batch.refill(["A", "B", "B2"], 7)
        corrupted = model(refilled)[:, -1].double()
        patched = model.run_with_hooks(refilled, fwd_hooks=[(mlp, at_end(cache[mlp]))])[:, -1].double()
        ablated = model.run_with_hooks(batch.tokens, fwd_hooks=[(mlp, at_end(None))])[:, -1].double()
        placed = model(batch.refill(["place"], 5))[:, -1]
    clean = clean_logits[:, -1].double()
    rows = torch.arange(batch.n_seqs)
    ans, cf = batch.next_token[:, -1], batch.counterfactual[:, -1]

    def diff(logits: torch.Tensor) -> float:
        return float((logits[rows, ans] - logits[rows, cf]).mean())

    want_clean, want_corrupted = diff(clean), diff(corrupted)
    margin = float((clean[rows, ans] - clean.scatter(1, ans[:, None], float("-inf")).max(1).values).mean())
    assert abs(margin - want_clean) > 1e-3  # the test tells the counterfactual from the margin over the best other
    report = check(path).claims
    claim = report["P1"]
    assert claim.details["metric_clean"] == pytest.approx(want_clean, abs=1e-4)
    assert claim.details["metric_corrupted"] == pytest.approx(want_corrupted, abs=1e-4)
    assert claim.details["metric_patched"] == pytest.approx(want_clean, abs=1e-4)
    assert claim.estimate == pytest.approx(1.0, abs=1e-4)
    assert report["P2"].details["metric_patched"] == pytest.approx(diff(patched), abs=1e-4)
    assert report["A1"].details["metric_ablated"] == pytest.approx(diff(ablated), abs=1e-4)
    assert report["I1"].estimate == pytest.approx(float((placed.argmax(-1) == clean.argmax(-1)).double().mean()))


def _error(path: Path) -> str:
    from circuitcheck.plan.compile import compile_file

    with pytest.raises(CircuitcheckError) as err:
        compile_file(path)
    return str(err.value)


def test_multi_token_words_are_pinned_to_the_word_list(hf_folder, tmp_path):
    path = write(tmp_path, hf_folder, names="[John, Mary, Tom, Anne-Marie, Jean-Luc]")
    text = _error(path)
    assert f"{path}:{line_of(path, 'names: [John')}:" in text
    assert "'Anne-Marie', 'Jean-Luc' tokenize to 3 tokens each" in text and "fix:" in text


def test_an_answer_of_two_tokens_is_pinned_to_the_answer(hf_folder, tmp_path):
    path = write(tmp_path, hf_folder, answer="{A} then")
    text = _error(path)
    assert f"{path}:{line_of(path, 'answer:')}:" in text and "must be one token after the prompt" in text


def test_an_unknown_refill_slot_is_pinned_to_the_claim(hf_folder, tmp_path):
    path = write(tmp_path, hf_folder, slots="[A, C]")
    text = _error(path)
    assert f"{path}:{line_of(path, 'scheme: refill')}:" in text and "no slot occurrence 'C'" in text


def test_a_model_without_a_tokenizer_is_named_with_the_fix(hf_folder, tmp_path):
    bare = tmp_path / "bare"
    bare.mkdir()
    for f in ("config.json", "model.safetensors"):
        (bare / f).write_bytes((hf_folder / f).read_bytes())
    path = write(tmp_path, bare)
    text = _error(path)
    assert f"{path}:{line_of(path, 'kind: prompts')}:" in text and "has none" in text and "tokenizer.json" in text


def test_refill_on_a_dataset_without_slots_is_refused(hf_folder, tmp_path):
    torch.save({"tokens": torch.randint(0, len(VOCAB), (4, 8))}, tmp_path / "tokens.pt")
    path = tmp_path / "file.yaml"
    path.write_text(f"""\
version: 1
name: refill-on-file
model: {hf_folder}
dataset: {{kind: file, path: tokens.pt}}
claims:
  - id: P1
    statement: x
    kind: activation_patching
    corruption: {{scheme: refill, slots: [A], seed: 7}}
    patch: [blocks.1.hook_resid_post]
    positions: all
    metric: logit_diff
    threshold: {{at_least: 0.5}}
""")
    text = _error(path)
    assert f"{path}:{line_of(path, 'scheme: refill')}:" in text and "'file' dataset has no slots" in text


def test_readouts_pass_the_counterfactual_in_whole_chunks_and_at_one_position():
    from circuitcheck.run.readouts import Readouts, Want

    gen = torch.Generator().manual_seed(1)
    n, seq, vocab = 5, 4, 7
    logits = torch.randn(n, seq, vocab, generator=gen)
    next_token = torch.randint(0, vocab, (n, seq), generator=gen)
    cf = torch.full((n, seq), NO_TARGET)
    cf[:, -1] = (next_token[:, -1] + 1) % vocab
    mask = torch.zeros(n, seq, dtype=torch.bool)
    mask[:, -1] = True
    want = Want(metrics.get("logit_diff"), mask)
    rows = torch.arange(n)
    by_hand = logits[rows, -1, next_token[:, -1]] - logits[rows, -1, cf[:, -1]]
    whole = Readouts(next_token, {"run": [want]}, [], 0, counterfactual=cf)
    whole.chunk("run", 0, logits[:3])
    whole.chunk("run", 3, logits[3:])
    at_end = Readouts(next_token, {"run": [want]}, [], 0, counterfactual=cf)
    at_end.position("run", 0, seq - 1, logits[:2, -1])
    at_end.position("run", 2, seq - 1, logits[2:, -1])
    for sink in (whole, at_end):
        assert torch.allclose(sink.values[("run", *want.key)], by_hand)


@pytest.mark.parametrize(("corruption", "expected"), [
    ("{scheme: resample_tokens, positions: {role: X}, seed: 5}", None),  # an inline selection, as before the union
    ("{scheme: refill, slots: [A, B2], seed: 5}", None),
    ("{schem: resample_tokens, positions: X_pos, seed: 5}",
     "missing required key 'scheme'\n  fix: add 'scheme: ...', one of: resample_tokens, refill"),
    ("{scheme: refill, slots: [A], positions: X_pos, seed: 5}",
     "unknown key 'positions'\n  fix: remove it; the keys allowed here are scheme, seed, slots"),
    ("{scheme: resample_tokens, positions: {rol: X}, seed: 5}", "unknown key 'rol'"),
])
def test_corruption_schemes_validate_with_readable_errors(tmp_path, capsys, corruption, expected):
    from circuitcheck.cli import main

    text = (Path(__file__).parent.parent / "hypotheses" / "trigram.yaml").read_text()
    old = "{scheme: resample_tokens, positions: X_pos, seed: 5}"
    assert old in text
    path = tmp_path / "t.yaml"
    path.write_text(text.replace(old, corruption, 1))
    code = main(["validate", str(path)])
    out = capsys.readouterr()
    if expected is None:
        assert code == 0, out
    else:
        assert code == 2 and f"{path}:{line_of(path, corruption)}:" in out.err + out.out
        assert expected in out.err + out.out
