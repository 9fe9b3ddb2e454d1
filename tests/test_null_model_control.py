"""The null-model control (issue 15): every claim re-run on re-initialised copies of the model.

A planted truth: on the trigram zoo model, head 0.0's positional QK scores increase with key position (0.999
of position pairs) and ablating it destroys the completion; random weights of the same architecture order
about half the pairs and lose nothing, so these claims must stay informative. A threshold any model meets
(at least 0.3 of pairs in order) must be marked uninformative and capped at inconclusive.
"""

from __future__ import annotations

import json
import math

import pytest

from circuitcheck import check
from circuitcheck.cli import main
from circuitcheck.errors import ModelLoadError
from circuitcheck.plan.compile import compile_file, null_plans
from circuitcheck.zoo.load import reinitialised

HEAD = """
version: 1
model: trigram
dataset: {kind: trigram, n_seqs: 80, seed: 1, density: 0.05}
positions:
  Y: {role: Y}
statistics: {bootstrap: 200}
"""

ORDER = """
  - id: {id}
    statement: Positional QK scores increase with key position.
    kind: qk_positional_order
    layer: 0
    head: 0
    direction: increasing
    threshold: {{at_least: {at_least}}}
"""

NECESSITY = """
  - id: T8
    statement: Mean-ablating the head destroys trigram completion.
    kind: ablation
    mode: necessity
    components: ["0.0"]
    method: mean
    positions: Y
    metric: accuracy
    effect: relative_drop
    threshold: {at_least: 0.5}
"""


def _file(write_yaml, *claims: str, controls: str = "") -> object:
    return write_yaml(HEAD + controls + "claims:\n" + "".join(claims))


def test_a_planted_truth_stays_informative_and_a_trivial_threshold_is_capped(write_yaml):
    path = _file(write_yaml, ORDER.format(id="real", at_least=0.9), NECESSITY, ORDER.format(id="trivial", at_least=0.3))
    plain = check(path)
    assert {c: v.verdict for c, v in plain.claims.items()} == {"real": "pass", "T8": "pass", "trivial": "pass"}
    assert all(v.null is None for v in plain.claims.values())
    assert "null_control" not in plain.document["claims"][0]

    report = check(path, controls=True)
    real, t8, trivial = (report.claims[c] for c in ("real", "T8", "trivial"))
    assert real.verdict == "pass" and not real.uninformative
    assert t8.verdict == "pass" and not t8.uninformative
    assert real.null is not None and real.null.n == 3 and real.null.passes == 0
    assert real.null.high < 0.9 < real.estimate  # random weights order about half the pairs
    assert t8.null is not None and t8.null.high < 0.5
    assert trivial.uninformative and trivial.null is not None and trivial.null.passes == 3
    assert trivial.verdict == "inconclusive" and "uninformative" in trivial.sentence
    assert report.exit_code == 3
    entry = {c["id"]: c for c in report.document["claims"]}["trivial"]["null_control"]
    assert entry["n"] == 3 and entry["uninformative"] is True and entry["passes"] == 3
    assert len(entry["estimates"]) == 3 and entry["min"] <= entry["mean"] <= entry["max"]
    assert math.isclose(entry["mean"], sum(entry["estimates"]) / 3)


def test_allow_uninformative_keeps_the_verdict_and_still_marks_it(write_yaml):
    claim = ORDER.format(id="trivial", at_least=0.3) + "    allow_uninformative: true\n"
    report = check(_file(write_yaml, claim), controls=True)
    v = report.claims["trivial"]
    assert v.verdict == "pass" and v.uninformative and report.exit_code == 0
    assert "allow_uninformative" in v.sentence


def test_the_file_sets_n_and_seed_and_runs_the_control_without_the_flag(write_yaml, tmp_path):
    controls = "controls: {null_model: {n: 2, seed: 7}}\n"
    path = _file(write_yaml, ORDER.format(id="real", at_least=0.9), controls=controls)
    out = tmp_path / "reports"
    assert main(["run", str(path), "--report-dir", str(out), "--quiet"]) == 0
    doc = json.loads((out / "h.json").read_text())
    null = doc["claims"][0]["null_control"]
    assert null["n"] == 2 and null["seed"] == 7 and null["uninformative"] is False
    md = (out / "h.md").read_text()
    assert "| null model |" in md and "Null model (2 re-initialised copies)" in md
    assert "null model" in (out / "h.html").read_text()
    # another seed is another null model
    other = check(_file(write_yaml, ORDER.format(id="real", at_least=0.9),
                        controls="controls: {null_model: {n: 2, seed: 8}}\n"))
    assert other.claims["real"].null is not None and other.claims["real"].null.estimates[0] == null["estimates"][1]


def test_null_copies_share_the_data_and_architecture_not_the_weights(write_yaml, trigram):
    plan = compile_file(_file(write_yaml, ORDER.format(id="real", at_least=0.9)))
    (seed, null), = null_plans(plan, 1, 4)
    assert seed == 4 and null.batch is plan.batch
    assert null.loaded.model.cfg.d_model == plan.loaded.model.cfg.d_model
    real_w = dict(plan.loaded.model.named_parameters())
    null_w = dict(null.loaded.model.named_parameters())
    assert real_w.keys() == null_w.keys()
    assert any(not (real_w[k] == null_w[k]).all() for k in real_w)
    again = reinitialised(plan.loaded, 4).model
    assert all((p == q).all() for p, q in zip(null.loaded.model.parameters(), again.parameters(), strict=True))


def test_a_model_without_a_config_cannot_be_reinitialised(trigram):
    from dataclasses import replace

    with pytest.raises(ModelLoadError, match="cannot re-initialise"):
        reinitialised(replace(trigram, card={}), 0)


def test_allow_uninformative_is_a_claim_key(write_yaml):
    from circuitcheck.authoring import hypothesis_schema

    text = json.dumps(hypothesis_schema())
    assert "allow_uninformative" in text and "null_model" in text


def test_uninformative_means_a_majority_of_copies_and_only_for_claims_expected_to_hold():
    from circuitcheck.verdict.verdict import NullControl

    def null(verdicts, expect="holds"):
        estimates = tuple(None if v is None else 0.5 for v in verdicts)
        skipped = {i: "does not compile" for i, v in enumerate(verdicts) if v is None}
        return NullControl(0, estimates, tuple(verdicts), skipped, expect=expect)

    assert not null(("pass", "fail", "fail")).uninformative
    assert null(("pass", "pass", "fail")).uninformative
    assert not null(("pass", "pass", "fail", "fail")).uninformative  # half is not a majority
    assert not null(("pass", "pass", "pass"), expect="refuted").uninformative
    assert not null(("pass", None, None)).uninformative  # copies it does not apply to do not pass
    shown = null(("pass", None, "fail")).shown()
    assert shown["estimates"] == [0.5, None, 0.5] and shown["not_applicable"] == {"1": "does not compile"}
    assert shown["mean"] == 0.5 and shown["passes"] == 1


def test_compare_runs_the_control_on_each_variant(write_yaml):
    from circuitcheck import compare

    path = _file(write_yaml, ORDER.format(id="trivial", at_least=0.3))
    report = compare(path, ["trigram", "trigram-plain"], controls=True)
    for run in report.document["runs"].values():
        (claim,) = run["claims"]
        assert claim["uninformative"] is True and claim["verdict"] == "inconclusive"
        assert claim["null_control"]["n"] == 3
