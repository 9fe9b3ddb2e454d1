"""Datasets: the trigram generator's guarantees, and token tensors from files."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import save_file

from circuitcheck.data.batch import NO_TARGET, TokenBatch
from circuitcheck.data.trigram import X, Y, Z, generate_trigram_batch, make_trigram_set
from circuitcheck.errors import SpecError, SpecErrors
from circuitcheck.plan.compile import compile_file
from tests.conftest import VALID_FILE

TRIGRAMS = make_trigram_set(75, 225, seed=0, n_repeats=3)


def test_trigram_set_has_distinct_prefixes_and_the_requested_repeats():
    prefixes = {(int(a), int(b)) for a, b, _ in TRIGRAMS}
    assert len(prefixes) == 225
    assert int((TRIGRAMS[:, 0] == TRIGRAMS[:, 1]).sum()) == 3


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), density=st.floats(0.02, 0.4))
def test_planted_trigrams_are_annotated_and_fillers_never_form_a_prefix(seed, density):
    b = generate_trigram_batch(n_seqs=40, seq_len=50, d_vocab=75, trigrams=TRIGRAMS, density=density, seed=seed)
    table = {(int(a), int(c)): int(z) for a, c, z in TRIGRAMS}
    toks, roles = b.tokens, b.roles
    for s, p in (roles == Y).nonzero().tolist():
        assert roles[s, p - 1] == X and roles[s, p + 1] == Z
        assert table[(int(toks[s, p - 1]), int(toks[s, p]))] == int(toks[s, p + 1]) == int(b.next_token[s, p])
    filler = roles[:, 1:] == 0
    prefix = torch.tensor(
        [[(int(a), int(c)) in table for a, c in zip(row[:-1], row[1:], strict=True)] for row in toks.tolist()]
    )
    assert not (prefix & filler & (roles[:, :-1] == 0)).any()
    assert (b.next_token[:, -1] == NO_TARGET).all() and torch.equal(b.next_token[:, :-1], toks[:, 1:])


def test_density_is_close_to_the_target():
    b = generate_trigram_batch(n_seqs=2000, seq_len=50, d_vocab=75, trigrams=TRIGRAMS, density=0.05, seed=0)
    assert float((b.roles > 0).float().mean()) == pytest.approx(0.05, abs=0.005)


def test_same_seed_same_tokens():
    a = generate_trigram_batch(n_seqs=20, seq_len=50, d_vocab=75, trigrams=TRIGRAMS, density=0.05, seed=9)
    b = generate_trigram_batch(n_seqs=20, seq_len=50, d_vocab=75, trigrams=TRIGRAMS, density=0.05, seed=9)
    c = generate_trigram_batch(n_seqs=20, seq_len=50, d_vocab=75, trigrams=TRIGRAMS, density=0.05, seed=10)
    assert torch.equal(a.tokens, b.tokens) and not torch.equal(a.tokens, c.tokens)


def test_batch_shapes_are_checked():
    with pytest.raises(ValueError, match="roles has shape"):
        TokenBatch(
            torch.zeros(2, 5, dtype=torch.long),
            torch.zeros(2, 5, dtype=torch.long),
            torch.zeros(2, 4, dtype=torch.long),
        )


FILE_DATASET = """
dataset:
  kind: file
  path: toks.safetensors
  roles_key: roles
"""


def file_spec(tmp_path, tokens, roles):
    save_file({"tokens": tokens, "roles": roles}, str(tmp_path / "toks.safetensors"))
    text = VALID_FILE.lstrip("\n")
    start, end = text.index("dataset:"), text.index("positions:")
    path = tmp_path / "h.yaml"
    path.write_text(text[:start] + FILE_DATASET.lstrip("\n") + text[end:])
    return path


def test_file_dataset_loads_tokens_and_roles(tmp_path, trigram):
    tokens = torch.randint(0, 75, (6, 50))
    roles = torch.zeros(6, 50, dtype=torch.long)
    roles[:, 10] = Y
    plan = compile_file(file_spec(tmp_path, tokens, roles))
    assert torch.equal(plan.batch.tokens, tokens)
    assert int(plan.masks["Y"].sum()) == 6


def test_file_dataset_rejects_out_of_vocabulary_tokens(tmp_path, trigram):
    tokens = torch.full((2, 50), 80)
    with pytest.raises((SpecError, SpecErrors), match=r"h.yaml:\d+:\d+: dataset.path: token ids must lie in \[0, 75\)"):
        compile_file(file_spec(tmp_path, tokens, torch.zeros(2, 50, dtype=torch.long)))


def test_plant_repeated_plants_only_trigrams_with_equal_leading_tokens(trigram, tmp_path):
    from circuitcheck.data.kinds import TrigramDataset
    from circuitcheck.data.registry import DataContext

    ctx = DataContext(trigram.card, tmp_path, 75, 50)
    batch = TrigramDataset(kind="trigram", n_seqs=200, seed=3, density=0.05, plant="repeated").build(ctx)
    ys = batch.role_mask("Y").nonzero().tolist()
    assert len(ys) > 100
    assert all(int(batch.tokens[b, p]) == int(batch.tokens[b, p - 1]) for b, p in ys)
    repeated = {tuple(t) for t in trigram.card["task"]["trigrams"] if t[0] == t[1]}
    assert {
        (int(batch.tokens[b, p - 1]), int(batch.tokens[b, p]), int(batch.tokens[b, p + 1])) for b, p in ys
    } <= repeated
