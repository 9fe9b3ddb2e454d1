"""Selections people reach for (issue 17, part 2): a union of roles (`role: [B, C]`), a selection written inline
wherever a selection's name is accepted, and a key relative to each query for attention claims (`keys: {offset: -1}`).
Each is validated as a named selection is, and its errors point where it is written."""

from __future__ import annotations

import json

import pytest
import torch

from circuitcheck import check
from circuitcheck.claims.attention_mass import AttentionMassClaim, key_mass, offset_mass
from circuitcheck.cli import main
from circuitcheck.data.batch import TokenBatch, next_tokens_of
from circuitcheck.errors import PlanError, SpecError, SpecErrors
from circuitcheck.plan.positions import selection_mask
from circuitcheck.run.execute import run_file
from circuitcheck.spec.base import PositionSelection
from circuitcheck.spec.hypothesis import load_hypothesis
from circuitcheck.testing import make_plan
from tests.conftest import VALID_FILE

DONE = """
version: 1
model: caesar-easy
dataset: {kind: caesar, n_seqs: 120, seed: 7}
positions:
  third_letters: {role: C}
claims:
  - id: union
    statement: Head 1.1 attends from third letters to second or third letters.
    kind: attention_mass
    head: '1.1'
    queries: third_letters
    keys: {role: [B, C]}
    threshold: {at_least: 0.5}
  - id: inline-queries
    statement: The same claim, its queries written inline.
    kind: attention_mass
    head: '1.1'
    queries: {role: C}
    keys: {role: [B, C]}
    threshold: {at_least: 0.5}
  - id: previous
    statement: Head 0.0 puts between 40% and 60% of its attention on the previous position.
    kind: attention_mass
    head: '0.0'
    queries: {role: C}
    keys: {offset: -1}
    threshold: {between: [0.4, 0.6]}
"""


def test_a_file_with_a_role_union_inline_selections_and_a_relative_key_validates_and_runs(write_yaml, tmp_path, capsys):
    path = write_yaml(DONE)
    assert main(["validate", str(path)]) == 0
    assert "ok (3 claims" in capsys.readouterr().out
    report = check(path, report_dir=tmp_path / "reports")
    union, inline, previous = (report.claims[k] for k in ("union", "inline-queries", "previous"))
    assert union.estimate == inline.estimate  # an inline selection is the named one
    assert 0.0 <= previous.estimate <= 1.0 and str(previous.threshold) == "between 0.4 and 0.6"
    assert "on '{role: [B, C]}'" in union.sentence and "on '{offset: -1}'" in previous.sentence
    doc = json.loads((tmp_path / "reports" / f"{report.name}.json").read_text())
    assert [c["id"] for c in doc["claims"]] == ["union", "inline-queries", "previous"]


def _batch() -> TokenBatch:
    tokens = torch.tensor([[0, 1, 2, 3, 1, 2]])
    roles = torch.tensor([[0, 1, 2, 3, 2, 1]])  # A B C B A: codes 1..3 are A, B, C
    return TokenBatch(tokens, next_tokens_of(tokens), roles, {}, role_names=("none", "A", "B", "C"))


def test_a_list_of_roles_is_their_union_and_each_is_checked():
    batch = _batch()
    union = selection_mask(PositionSelection(role=["B", "C"]), batch, ("positions", "bc"))
    each = batch.role_mask("B") | batch.role_mask("C")
    assert torch.equal(union, each) and union.sum() == 3
    assert torch.equal(selection_mask(PositionSelection(role=["B"]), batch, ()), batch.role_mask("B"))
    with pytest.raises(PlanError) as info:
        selection_mask(PositionSelection(role=["B", "Q"]), batch, ("positions", "bq"))
    assert info.value.path == ("positions", "bq", "role", 1) and "no role 'Q'" in info.value.message
    with pytest.raises(ValueError, match="'role' lists no role"):
        PositionSelection(role=[])


def test_offset_mass_is_the_attention_on_the_key_that_far_back():
    pattern = torch.softmax(torch.randn(3, 6, 6, generator=torch.Generator().manual_seed(0)), -1).tril()
    for offset in (0, -1, -2):
        keys = torch.zeros(6, 6)
        for q in range(6):
            if q + offset >= 0:
                keys[q, q + offset] = 1.0
        expected = (pattern.double() * keys.double()).sum(-1)
        assert torch.allclose(offset_mass(pattern, offset), expected)
    # offset 0 on a one-hot key mask is the same as key_mass with that mask
    assert torch.allclose(offset_mass(pattern, 0)[:, 3], key_mass(pattern, torch.eye(6)[3].expand(3, 6))[:, 3])


def test_the_relative_key_claim_matches_the_pattern_read_directly(tiny_model):
    claim = AttentionMassClaim.model_validate(
        {"id": "prev", "statement": "s", "kind": "attention_mass", "head": "1.2", "queries": "all",
         "keys": {"offset": -1}, "threshold": {"at_least": 0.1}}
    )
    plan = make_plan(tiny_model, [claim])
    measured = run_file(plan).claims[0].measurement
    _, cache = tiny_model.run_with_cache(plan.batch.tokens)
    pattern = cache["blocks.1.attn.hook_pattern"][:, 2].double()
    previous = torch.diagonal(pattern, offset=-1, dim1=1, dim2=2)  # [batch, seq - 1]: query q to key q - 1
    assert measured.estimate == pytest.approx(float(previous.mean()), abs=1e-9)  # query 0 has no key: left out
    assert measured.details["n_queries"] == previous.numel()


def test_a_relative_key_must_look_back(write_yaml):
    text = DONE.replace("{offset: -1}", "{offset: 1}")
    with pytest.raises((SpecError, SpecErrors)) as info:
        load_hypothesis(write_yaml(text))
    (err,) = getattr(info.value, "errors", [info.value])
    assert err.path == "claims.2.keys" and (err.where.line, err.where.col) == (26, 11)
    assert "attends only to positions at or before the query" in err.message and "{offset: -1}" in err.fix


def test_an_error_in_an_inline_selection_is_reported_where_it_is_written(write_yaml, capsys):
    inline = "queries: {role: C}\n    keys: {role: [B, C]}"
    path = write_yaml(DONE.replace(inline, inline.replace("role: C", "rol: C")))
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}:18:15: claims.1.queries.rol: unknown key 'rol'" in err
    assert "  fix: did you mean 'role'?" in err
    assert "positions." not in err  # the made-up name under positions: never shows


def test_a_model_time_error_in_an_inline_selection_is_pinned_where_it_is_written(write_yaml):
    path = write_yaml(DONE.replace("keys: {role: [B, C]}\n    threshold: {at_least: 0.5}\n  - id: previous",
                                   "keys: {role: [B, Q]}\n    threshold: {at_least: 0.5}\n  - id: previous"))
    with pytest.raises((SpecError, SpecErrors)) as info:
        check(path)
    text = str(info.value)
    assert f"{path}:19:22: claims.1.keys.role.1: this dataset annotates no role 'Q'" in text


def test_a_relative_key_is_not_a_selection_elsewhere(write_yaml):
    text = VALID_FILE.replace("positions: Y\n    metric", "positions: {offset: -1}\n    metric")
    with pytest.raises((SpecError, SpecErrors)) as info:
        load_hypothesis(write_yaml(text))
    errors = getattr(info.value, "errors", [info.value])
    assert [(e.path, e.message) for e in errors] == [("claims.0.positions.offset", "unknown key 'offset'")]


def test_inline_selections_work_in_nested_fields_and_name_collisions(write_yaml):
    inline = "positions: {role: Y}\n    ablate_at: {range: [0, 20]}\n    metric"
    text = VALID_FILE.replace("positions: Y\n    metric", inline)
    text = text.replace("  Y: {role: Y}\n", "  Y: {role: Y}\n  '{role: Y}': {role: X}\n")  # a name that is the text
    spec, _ = load_hypothesis(write_yaml(text))
    claim = spec.claims[0]
    assert spec.positions[claim.positions] == PositionSelection(role="Y")
    assert spec.positions["{role: Y}"] == PositionSelection(role="X")  # the user's own is kept
    assert claim.positions != "{role: Y}" and spec.positions[claim.ablate_at] == PositionSelection(range=(0, 20))
