"""Issue 17: an ordering claim prints its declared order apart from the measured estimates, and the
ablation kind's own rules give a fix line."""

from __future__ import annotations

import json

import pytest

from circuitcheck.errors import SpecError, SpecErrors
from circuitcheck.spec.hypothesis import load_hypothesis
from tests.conftest import HYPOTHESES


def test_the_ordering_sentence_separates_the_declared_order_from_the_measured_numbers(tmp_path):
    from circuitcheck.api import check

    report = check(HYPOTHESES / "trigram-ladder.yaml", report_dir=tmp_path)
    doc = json.loads(next(tmp_path.glob("*.json")).read_text())
    ordering = [c for c in doc["claims"] if c["kind"] == "ordering"]
    assert ordering and report is not None
    for claim in ordering:
        ids = list(claim["details"]["estimates"])
        sentence = claim["sentence"]
        declared = [f"declared {arrow.join(ids)}; measured " for arrow in (" < ", " > ")]
        assert sentence.startswith(tuple(declared)), sentence
        assert ", ".join(f"{i} " for i in ids[:1]) in sentence.split("; measured ")[1], sentence


ABLATION = """
version: 1
name: t
model: trigram
dataset: {{kind: trigram, n_seqs: 8, seed: 1}}
positions: {{Y: {{role: Y}}}}
claims:
  - id: a
    statement: s
    kind: ablation
    {fields}
    method: mean
    positions: Y
    metric: accuracy
    threshold: {{at_least: 0.5}}
"""


@pytest.mark.parametrize(("fields", "message", "fix"), [
    ("mode: necessity\n    components: ['0.0']", "a necessity claim needs an 'effect'",
     "add 'effect: relative_drop' (or absolute_drop)"),
    ("mode: sufficiency\n    components: ['0.0']\n    effect: relative_drop",
     "'effect' applies to necessity claims only", "remove 'effect:'"),
    ("mode: necessity\n    components: []\n    effect: relative_drop", "a necessity claim needs at least one component",
     "list the components whose ablation should hurt"),
])
def test_ablation_rules_come_with_a_fix(write_yaml, fields, message, fix):
    with pytest.raises((SpecError, SpecErrors)) as info:
        load_hypothesis(write_yaml(ABLATION.format(fields=fields)))
    text = str(info.value)
    assert message in text and fix in text, text
