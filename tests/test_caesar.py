"""The Caesar-cipher task (seed 001): generator guarantees, reference tables, zoo models, dataset kind."""

from __future__ import annotations

import math
import string
from collections import Counter

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from circuitcheck.data.caesar import (
    ROLE_NAMES,
    TOKEN_NAMES,
    WORDS,
    generate_caesar_batch,
    letter_frequencies,
    mode_weights,
    rotation_posterior,
    zipf_weights,
)
from circuitcheck.errors import SpecError, SpecErrors
from circuitcheck.plan.compile import compile_file
from circuitcheck.zoo.load import LoadedModel, load


def plaintext(tokens: list[int], rotation: int) -> str:
    """Independent decoder: token 26 is a space, letters rotate back by ``rotation``."""
    return "".join(" " if t == 26 else string.ascii_lowercase[(t - rotation) % 26] for t in tokens)


def words_of(batch) -> list[str]:
    out: list[str] = []
    for toks, label in zip(batch.tokens.tolist(), batch.next_token[:, 0].tolist(), strict=True):
        text = plaintext(toks, label)
        out += [w for w in text.split(" ")[: (len(toks) // 4)] if w]  # whole words only
    return out


def test_word_list_is_100_distinct_three_letter_words():
    assert len(WORDS) == 100 and len(set(WORDS)) == 100
    assert all(len(w) == 3 and set(w) <= set(string.ascii_lowercase) for w in WORDS)
    assert WORDS[0] == "the"


def test_zipf_weights_are_one_over_rank():
    w = zipf_weights(100)
    assert sum(w) == pytest.approx(1.0)
    harmonic = sum(1 / k for k in range(1, 101))
    assert w[0] == pytest.approx(1 / harmonic) and w[9] == pytest.approx(0.1 / harmonic)
    assert mode_weights("medium") == pytest.approx([0.01] * 100)
    with pytest.raises(ValueError, match="unknown Caesar mode 'hard'"):
        mode_weights("hard")


def test_same_seed_same_batch():
    a = generate_caesar_batch(20, 32, "easy", seed=4)
    b = generate_caesar_batch(20, 32, "easy", seed=4)
    c = generate_caesar_batch(20, 32, "easy", seed=5)
    assert torch.equal(a.tokens, b.tokens) and torch.equal(a.next_token, b.next_token)
    assert not torch.equal(a.tokens, c.tokens)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), seq_len=st.integers(1, 32), mode=st.sampled_from(["easy", "medium"]))
def test_labels_roles_and_decoding(seed, seq_len, mode):
    b = generate_caesar_batch(8, seq_len, mode, seed)
    assert b.tokens.shape == (8, seq_len) and b.role_names == ROLE_NAMES and b.token_names == TOKEN_NAMES
    assert 0 <= int(b.tokens.min()) and int(b.tokens.max()) <= 26
    # the label is the sequence's rotation at every position
    assert (b.next_token == b.next_token[:, :1]).all() and b.next_token.min() >= 0 and b.next_token.max() <= 25
    for toks, roles, label in zip(b.tokens.tolist(), b.roles.tolist(), b.next_token[:, 0].tolist(), strict=True):
        text = plaintext(toks, label)
        # rotating back gives words of the list, a word starting at position 0, single spaces
        pieces = text.split(" ")
        assert all(w in WORDS for w in pieces[:-1])
        assert any(w.startswith(pieces[-1]) for w in WORDS)
        for p, (ch, role) in enumerate(zip(text, roles, strict=True)):
            expected = "space" if ch == " " else "ABC"[p % 4]
            assert ROLE_NAMES[role] == expected
            assert (ch == " ") == (p % 4 == 3)


def test_rotations_cover_all_26_values_evenly():
    labels = generate_caesar_batch(2600, 4, "medium", seed=1).next_token[:, 0]
    counts = torch.bincount(labels, minlength=26).double()
    assert counts.min() > 0
    assert float(((counts - 100) ** 2 / 100).sum()) < 60  # chi-square, 25 dof: p ~ 1e-4


@pytest.mark.parametrize("mode", ["easy", "medium"])
def test_word_frequencies_follow_the_mode_weights(mode):
    words = words_of(generate_caesar_batch(1500, 32, mode, seed=7))
    n = len(words)
    counts = Counter(words)
    for word, w in zip(WORDS, mode_weights(mode), strict=True):
        sd = math.sqrt(n * w * (1 - w))
        assert abs(counts[word] - n * w) <= 5 * sd + 1, (word, counts[word], n * w)


def test_easy_and_medium_differ_where_zipf_says():
    easy = Counter(words_of(generate_caesar_batch(500, 32, "easy", seed=3)))
    medium = Counter(words_of(generate_caesar_batch(500, 32, "medium", seed=3)))
    assert easy["the"] > 10 * medium["the"]
    assert medium["ago"] > 3 * max(1, easy["ago"])


def test_letter_frequencies_against_counting():
    freqs = letter_frequencies(WORDS, mode_weights("medium"))
    assert freqs.shape == (3, 26)
    assert torch.allclose(freqs.sum(dim=1), torch.ones(3, dtype=freqs.dtype))
    for pos in range(3):
        counted = Counter(w[pos] for w in WORDS)
        for i, letter in enumerate(string.ascii_lowercase):
            assert float(freqs[pos, i]) == pytest.approx(counted[letter] / 100)
    easy = letter_frequencies()
    assert torch.allclose(easy.sum(dim=1), torch.ones(3, dtype=easy.dtype))
    the = zipf_weights(100)[0]
    assert float(easy[0, string.ascii_lowercase.index("t")]) >= the


def test_letter_frequencies_match_the_generated_first_letters():
    b = generate_caesar_batch(3000, 1, "easy", seed=11)
    first = (b.tokens[:, 0] - b.next_token[:, 0]) % 26
    empirical = torch.bincount(first, minlength=26).double() / 3000
    assert torch.allclose(empirical, letter_frequencies()[0], atol=0.03)


def test_rotation_posterior_is_the_shifted_letter_table():
    freqs = letter_frequencies()[0]
    post = rotation_posterior(freqs)
    assert torch.allclose(post.sum(dim=1), torch.ones(26, dtype=post.dtype))
    t, h = string.ascii_lowercase.index("t"), string.ascii_lowercase.index("h")
    # seeing ciphertext 't': rotation 0 means plaintext 't'; rotation 12 means plaintext 'h'
    assert float(post[t, 0] / post[t, 12]) == pytest.approx(float(freqs[t] / freqs[h]))


@pytest.fixture(scope="module", params=["caesar-easy", "caesar-medium"])
def caesar(request) -> LoadedModel:
    return load(request.param)


def test_card_describes_the_task_it_was_trained_on(caesar):
    task = caesar.card["task"]
    assert task["kind"] == "caesar" and task["seq_len"] == 32
    assert task["words"] == list(WORDS)
    assert task["weights"] == pytest.approx(list(mode_weights(task["mode"])))
    expected = {"n_layers": 2, "n_heads": 2, "d_model": 48, "d_head": 24, "d_vocab": 27, "d_vocab_out": 26, "n_ctx": 32}
    assert {key: getattr(caesar.model.cfg, key) for key in expected} == expected
    assert caesar.model.cfg.attn_only and caesar.model.cfg.normalization_type == "LN"


def test_card_evaluation_is_what_the_checkpoint_does(caesar):
    ev = caesar.card["evaluation"]
    batch = generate_caesar_batch(ev["n_seqs"], 32, caesar.card["task"]["mode"], ev["eval_seed"])
    with torch.no_grad():
        probs = caesar.model(batch.tokens).softmax(-1)
    correct = probs.gather(-1, batch.next_token[..., None]).squeeze(-1)
    assert float(correct.mean()) == pytest.approx(ev["mean_prob"], abs=1e-3)
    assert float(correct.median()) == pytest.approx(ev["median_prob"], abs=1e-3)
    assert float((probs.argmax(-1) == batch.next_token).float().mean()) == pytest.approx(ev["accuracy"], abs=1e-3)
    assert float(correct.mean()) >= 0.8  # a regression floor; the card and models/README.md give the real figure


CAESAR_FILE = """
version: 1
model: {model}
dataset:
  kind: caesar
  n_seqs: 40
  seed: 0
{extra}positions:
  C: {{role: C}}
  spaces: {{tokens: [space]}}
  from_3: {{range: [3, 16]}}
claims:
  - id: C4
    statement: Layer 1 is necessary.
    kind: ablation
    mode: necessity
    components: ["1.0", "1.1"]
    method: mean
    positions: from_3
    metric: correct_prob
    effect: relative_drop
    threshold: {{at_least: 0.5}}
"""


def test_caesar_dataset_reads_the_model_card(write_yaml):
    plan = compile_file(write_yaml(CAESAR_FILE.format(model="caesar-easy", extra="")))
    batch = plan.batch
    assert batch.params["mode"] == "easy" and batch.params["seq_len"] == 32
    assert batch.role_names == ROLE_NAMES and batch.token_names == TOKEN_NAMES
    assert torch.equal(plan.masks["spaces"], batch.tokens == 26)
    assert torch.equal(plan.masks["C"], batch.role_mask("C"))
    expected = generate_caesar_batch(40, 32, "easy", seed=0)
    assert torch.equal(batch.tokens, expected.tokens) and torch.equal(batch.next_token, expected.next_token)


def test_caesar_dataset_mode_override(write_yaml):
    plan = compile_file(write_yaml(CAESAR_FILE.format(model="caesar-easy", extra="  mode: medium\n  seq_len: 16\n")))
    expected = generate_caesar_batch(40, 16, "medium", seed=0)
    assert plan.batch.params["mode"] == "medium" and plan.batch.params["trained_mode"] == "easy"
    assert torch.equal(plan.batch.tokens, expected.tokens)


def test_caesar_seq_len_beyond_n_ctx_is_refused(write_yaml):
    path = write_yaml(CAESAR_FILE.format(model="caesar-easy", extra="  seq_len: 40\n"))
    with pytest.raises(
        (SpecError, SpecErrors), match=r"h.yaml:\d+:\d+: dataset.seq_len: seq_len 40 exceeds the model's n_ctx 32"
    ):
        compile_file(path)


def test_caesar_dataset_on_a_trigram_model_is_a_clear_error(write_yaml, trigram):
    path = write_yaml(CAESAR_FILE.format(model="trigram", extra=""))
    with pytest.raises(SpecError, match=r"h.yaml:4:9: dataset.kind: the model card has no caesar task") as info:
        compile_file(path)
    assert "caesar-easy" in str(info.value)
