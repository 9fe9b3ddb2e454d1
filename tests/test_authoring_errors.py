"""Issue 17: errors a newcomer can act on. Every type error has a fix line in the file's terms, and
``validate`` reports every problem of a file in one pass: schema and cross-reference errors together,
in file order."""

from __future__ import annotations

from pathlib import Path

import pytest

from circuitcheck.cli import main
from circuitcheck.errors import SpecError, SpecErrors
from circuitcheck.metrics import metrics
from circuitcheck.spec.components import COMPONENT_FIX, RECEIVER_FIX
from circuitcheck.spec.hypothesis import hypothesis_model, load_hypothesis
from circuitcheck.spec.messages import (
    BOOLEAN_FIX,
    ID_FIX,
    LIST_FIX,
    NAME_FIX,
    NULL_FIX,
    NUMBER_FIX,
    SOME_TEXT_FIX,
    WHOLE_NUMBER_FIX,
    Names,
    explain,
)
from circuitcheck.spec.references import references, references_in_data
from circuitcheck.spec.yaml_source import SourceMap, read_yaml
from tests.conftest import HYPOTHESES, VALID_FILE

METRICS = f"use one of: {', '.join(metrics.names())}"


def errors_in(write_yaml, text: str) -> list[SpecError]:
    with pytest.raises((SpecError, SpecErrors)) as info:
        load_hypothesis(write_yaml(text))
    err = info.value
    if isinstance(err, SpecErrors):
        return err.errors
    assert isinstance(err, SpecError)
    return [err]


def one_error(write_yaml, text: str) -> SpecError:
    (err,) = errors_in(write_yaml, text)
    return err


def claim(stanza: str, cid: str = "X") -> str:
    """VALID_FILE with a second claim, ``stanza`` (indented claim keys after id and statement)."""
    return VALID_FILE + f"  - id: {cid}\n    statement: s\n" + stanza


THRESHOLD = "    threshold: {at_least: 0.5}\n"
MASS = "    kind: attention_mass\n    head: '0.0'\n    queries: Y\n    keys: Y\n" + THRESHOLD


# --- a fix line for every type error ------------------------------------------------------------------

TYPE_ERRORS = [
    # YAML reads an unquoted 0.0 / 1.10 as a number: quote it, as written (1.10 is not 1.1)
    (VALID_FILE.replace('components: ["0.0"]', "components: [0.0]"), "claims.0.components.0",
     "expected a component name, got 0.0", "quote it: '0.0' (YAML reads 0.0 as a number)"),
    (claim("    kind: ov_copying\n    head: 1.10\n" + THRESHOLD), "claims.1.head",
     "expected a head as 'L.H', got 1.1", "quote it: '1.10' (YAML reads 1.10 as a number)"),
    (claim("    kind: ov_copying\n    head: {layer: 1, head: 0}\n" + THRESHOLD), "claims.1.head",
     "expected a head as 'L.H', got {layer: 1, head: 0}", "write one head in quotes, e.g. '1.0'"),
    # a selection written inline is valid (tests/test_authoring_selections.py); a broken one is reported where
    # it is written, in the same terms as one under 'positions:'
    (claim(MASS.replace("keys: Y", "keys: {rol: Y}")), "claims.1.keys.rol", "unknown key 'rol'",
     "did you mean 'role'?"),
    (claim(MASS.replace("keys: Y", "keys: {range: [3]}")), "claims.1.keys.range",
     "expected a list of 2 values, got [3]", "write 2 values in brackets, e.g. [1, 49]"),
    (claim(MASS.replace("queries: Y", "queries: [Y]")), "claims.1.queries",
     "expected the name of a selection under 'positions:', got [Y]",
     "write the name of a selection under 'positions:' (known: Y, all)"),
    (VALID_FILE.replace("metric: accuracy", "metric: {name: accuracy}"), "claims.0.metric",
     "expected the name of a metric, got {name: accuracy}", METRICS),
    (claim("    kind: ordering\n    claims: [T8, {id: T8}]\n    direction: increasing\n" + THRESHOLD),
     "claims.1.claims.1", "expected the id of another claim, got {id: T8}",
     "use ids of other claims in this file: T8, X"),
    (claim("    kind: preservation\n    circuit: [c]\n    ablation: zero\n    positions: Y\n"
           "    metric: accuracy\n    threshold: {within: 0.1}\n") + "circuits:\n  c: {nodes: [embed, logits]}\n",
     "claims.1.circuit", "expected the name of a circuit under 'circuits:', got [c]",
     "use a circuit under 'circuits:' (known: c)"),
    (claim("    kind: path_patching\n    sender: '0.0'\n    receivers: [{to: logits}]\n    method: zero\n"
           "    positions: Y\n    metric: accuracy\n    effect: absolute_drop\n" + THRESHOLD),
     "claims.1.receivers.0", "expected a receiver, got {to: logits}", RECEIVER_FIX),
    (VALID_FILE.replace('components: ["0.0"]', "components: [[embed]]"), "claims.0.components.0",
     "expected a component name, got [embed]", COMPONENT_FIX),
    (VALID_FILE.replace("statement: The head is necessary.", "statement: [a, b]"), "claims.0.statement",
     "expected text, got [a, b]", "write one value in quotes here, not a list"),
    (VALID_FILE.replace("statement: The head is necessary.", "statement: on"), "claims.0.statement",
     "expected text, got True", "YAML reads unquoted on as the boolean true; quote it: 'on'"),
    (VALID_FILE.replace("statement: The head is necessary.", "statement:"), "claims.0.statement",
     "expected text, got nothing (null)", NULL_FIX),
    # numbers
    (VALID_FILE.replace("n_seqs: 50", "n_seqs: 50.5"), "dataset.n_seqs",
     "expected an integer (a whole number), got 50.5", "drop the fractional part: 50"),
    (VALID_FILE.replace("n_seqs: 50", "n_seqs: fifty"), "dataset.n_seqs",
     "expected an integer (a whole number), got 'fifty'", WHOLE_NUMBER_FIX),
    (VALID_FILE.replace("n_seqs: 50", "n_seqs: [50]"), "dataset.n_seqs",
     "expected an integer (a whole number), got [50]", WHOLE_NUMBER_FIX),
    (VALID_FILE.replace("n_seqs: 50", "n_seqs:"), "dataset.n_seqs",
     "expected an integer (a whole number), got nothing (null)", NULL_FIX),
    (VALID_FILE.replace("density: 0.05", "density: 5%"), "dataset.density",
     "expected a number, got '5%'", "write 5% as the fraction 0.05"),
    (VALID_FILE.replace("density: 0.05", "density: high"), "dataset.density", "expected a number, got 'high'",
     NUMBER_FIX),
    (VALID_FILE.replace("density: 0.05", "density: [0.05]"), "dataset.density", "expected a number, got [0.05]",
     NUMBER_FIX),
    (VALID_FILE.replace("Y: {role: Y}", "Y: {all: maybe}"), "positions.Y.all",
     "expected true or false, got 'maybe'", BOOLEAN_FIX),
    (VALID_FILE.replace("Y: {role: Y}", "Y: {all: [true]}"), "positions.Y.all",
     "expected true or false, got [true]", BOOLEAN_FIX),
    # lists, pairs and mappings
    (VALID_FILE.replace('components: ["0.0"]', "components: attn0"), "claims.0.components",
     "expected a list, got 'attn0'", "put it in brackets: [attn0]"),
    (VALID_FILE.replace('components: ["0.0"]', "components: 0.0"), "claims.0.components",
     "expected a list, got 0.0", "put it in brackets: ['0.0']"),
    (VALID_FILE.replace("Y: {role: Y}", "Y: {indices: 3}"), "positions.Y.indices",
     "expected a list, got 3", "put it in brackets: [3]"),
    (VALID_FILE.replace('components: ["0.0"]', "components: {a: b}"), "claims.0.components",
     "expected a list, got {a: b}", LIST_FIX),
    (VALID_FILE.replace("Y: {role: Y}", "Y: {range: [1]}"), "positions.Y.range",
     "expected a list of 2 values, got [1]", "write 2 values in brackets, e.g. [1, 49]"),
    (VALID_FILE.replace("{at_least: 0.5}", "0.5"), "claims.0.threshold", "expected a mapping, got 0.5",
     "write a mapping ('key: value' lines, or {key: value}) with keys from: at_least, at_most, between, within, "
     "e.g. {at_least: 0.5}"),
    (VALID_FILE + "statistics: [1000]\n", "statistics", "expected a mapping, got [1000]",
     "write a mapping ('key: value' lines, or {key: value}) with keys from: bootstrap, seed, confidence"),
    # sizes and bounds
    (VALID_FILE.replace("    threshold:", "    regression_tolerance: -1\n    threshold:"),
     "claims.0.regression_tolerance", "Input should be greater than or equal to 0, got -1", "use a value >= 0.0"),
    (VALID_FILE + "statistics: {confidence: 1.5}\n", "statistics.confidence",
     "Input should be less than 1, got 1.5", "use a value < 1.0"),
    (VALID_FILE.replace("statement: The head is necessary.", "statement: ''"), "claims.0.statement",
     "String should have at least 1 character, got ''", SOME_TEXT_FIX),
    (VALID_FILE.replace("model: trigram\n", "model: trigram\nvariants: [trigram]\n"), "variants",
     "List should have at least 2 items after validation, not 1, got [trigram]", "give at least 2 item(s)"),
]


@pytest.mark.parametrize(("text", "path", "message", "fix"), TYPE_ERRORS)
def test_every_type_error_says_what_was_expected_and_how_to_fix_it(write_yaml, text, path, message, fix):
    err = one_error(write_yaml, text)
    assert (err.path, err.message, err.fix) == (path, message, fix)
    assert f"\n  fix: {fix}" in str(err)


def test_the_id_rule_is_said_in_words_not_as_a_regex(write_yaml):
    first = one_error(write_yaml, VALID_FILE.replace("id: T8", "id: 8T"))
    assert (first.path, first.message, first.fix) == ("claims.0.id", "an id must start with a letter, got '8T'", ID_FIX)
    assert ID_FIX == "ids start with a letter; use letters, digits, '_', '.', '-'"
    inner = one_error(write_yaml, VALID_FILE.replace("id: T8", "id: T 8"))
    assert (inner.message, inner.fix) == ("an id cannot hold ' ', got 'T 8'", ID_FIX)
    circuit = one_error(write_yaml, VALID_FILE + "circuits:\n  2nd: {nodes: [embed, logits]}\n")
    assert circuit.path == "circuits.2nd"
    assert (circuit.message, circuit.fix) == ("a name must start with a letter, got '2nd'", NAME_FIX)
    assert "[A-Za-z]" not in str(first) + str(inner) + str(circuit)


RULES = [
    (VALID_FILE.replace("    threshold:", "    expect: refuted\n    threshold:"), "claims.0",
     "a claim with 'expect: refuted' needs an 'expect_reason'",
     "add 'expect_reason: ...' saying why the claim is expected to fail"),
    (claim("    kind: ov_copying\n    head: '0.0'\n    floor: {quantile: 0.1, at_least: 0.2}\n" + THRESHOLD),
     "claims.1", "claim kind 'ov_copying' has no per-example scores, so it cannot take a 'floor'",
     "remove 'floor:'; floors apply to kinds with per-example scores, such as ablation"),
    (VALID_FILE.replace("Y: {role: Y}", "Y: {all: false}"), "positions.Y",
     "select something: this selection has no key that selects positions",
     "give 'role', 'range', 'indices', 'same_as_previous', 'tokens', 'prefix_contains', 'prefix_lacks' or "
     "'all: true', e.g. {role: Y}"),
    (VALID_FILE + "circuits:\n  c: {}\n", "circuits.c", "give exactly one of 'edges' or 'nodes'",
     "add 'edges: [\"sender -> receiver\", ...]' or 'nodes: [...]'"),
    (VALID_FILE + "circuits:\n  c: {nodes: [embed, logits], edges: [embed -> logits]}\n", "circuits.c",
     "give exactly one of 'edges' or 'nodes'",
     "keep one of the two: a circuit is its edges, or every edge among its nodes"),
]


@pytest.mark.parametrize(("text", "path", "message", "fix"), RULES)
def test_rules_the_spec_checks_come_with_a_fix(write_yaml, text, path, message, fix):
    err = one_error(write_yaml, text)
    assert (err.path, err.message, err.fix) == (path, message, fix)


@pytest.mark.parametrize(
    ("old", "new", "path", "message", "fix"),
    [
        ("kind: ablation", "kind: ablashun", "claims.0.kind", None, "did you mean 'ablation'?"),
        ("kind: ablation", "kind: zzz", "claims.0.kind", None, "set 'kind' to one of the listed values"),
        ("    kind: ablation\n", "", "claims.0", "missing required key 'kind'",
         "add 'kind: ...', one of the kinds `circuitcheck schema` lists"),
        ("method: zero", "method: zeros", "claims.0.method", "expected 'zero', 'mean' or 'resample', got 'zeros'",
         "did you mean 'zero'?"),
        ("positions: Y\n    metric", "positions: Yy\n    metric", "claims.0.positions",
         "unknown position selection 'Yy'", "did you mean 'Y'? define it under 'positions:' (known: Y, all)"),
    ],
)
def test_near_misses_get_a_did_you_mean(write_yaml, old, new, path, message, fix):
    assert old in VALID_FILE
    err = one_error(write_yaml, VALID_FILE.replace(old, new))
    assert err.path == path and err.fix == fix
    if message is not None:
        assert err.message == message


def test_a_misspelt_required_key_is_named_in_the_missing_key_s_fix(write_yaml):
    errors = errors_in(write_yaml, VALID_FILE.replace("    method: zero", "    methd: zero"))
    missing, unknown = errors  # the missing key is reported where the claim starts, before the typo
    assert (missing.path, missing.message) == ("claims.0", "missing required key 'method'")
    assert missing.fix == "rename 'methd' (line 16) to 'method'"
    assert (unknown.path, unknown.message, unknown.fix) == ("claims.0.methd", "unknown key 'methd'",
                                                           "did you mean 'method'?")


def test_a_duplicate_id_is_pinned_to_the_second_and_names_the_first(write_yaml):
    text = VALID_FILE + VALID_FILE.split("claims:\n")[1]
    err = one_error(write_yaml, text)
    assert (err.path, err.where.line) == ("claims.1.id", 21)
    assert err.message == "claim id 'T8' is used twice; ids must be unique"
    assert err.fix == "rename one of them (the first is on line 11)"


def test_an_unknown_circuit_gets_a_did_you_mean(write_yaml):
    text = VALID_FILE + (
        "  - id: P\n    statement: s\n    kind: preservation\n    circuit: inductoin\n    ablation: zero\n"
        "    positions: Y\n    metric: accuracy\n    threshold: {within: 0.1}\n"
        "circuits:\n  induction: {nodes: [embed, '0.0', logits]}\n"
    )
    errors = [e for e in errors_in(write_yaml, text) if e.path == "claims.1.circuit"]
    assert [(e.message, e.fix) for e in errors] == [
        ("unknown circuit 'inductoin'", "did you mean 'induction'? define it under 'circuits:' (known: induction)")
    ]


# --- every error in one pass ----------------------------------------------------------------------------------

FIVE = """
version: 1
model: trigram
dataset: {kind: trigram, n_seqs: 50, seed: 1, density: 0.05}
positions:
  Y: {role: Y}
claims:
  - id: 1st
    statement: Head 0.0 attends to the previous token.
    kind: attention_mass
    head: 0.0
    queries: Y
    keys: {rol: Y}
    threshold: {between: [0.4, 0.6]}
  - id: T8
    statement: The head is necessary.
    kind: ablation
    mode: necessity
    components: ["0.0"]
    method: zero
    positions: Z
    metric: acurracy
    effect: relative_drop
    threshold: {at_least: 0.5}
"""


def test_five_errors_of_different_kinds_are_reported_in_one_validate_in_file_order(write_yaml, capsys):
    path = write_yaml(FIVE)
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if not line.startswith("  fix: ")]
    fixes = [line for line in err.splitlines() if line.startswith("  fix: ")]
    assert lines == [
        f"{path}:7:9: claims.0.id: an id must start with a letter, got '1st'",
        f"{path}:10:11: claims.0.head: expected a head as 'L.H', got 0.0",
        f"{path}:12:12: claims.0.keys.rol: unknown key 'rol'",
        f"{path}:20:16: claims.1.positions: unknown position selection 'Z'",
        f"{path}:21:13: claims.1.metric: unknown metric 'acurracy'",
    ]
    assert fixes == [
        f"  fix: {ID_FIX}",
        "  fix: quote it: '0.0' (YAML reads 0.0 as a number)",
        "  fix: did you mean 'role'?",
        "  fix: define it under 'positions:' (known: Y, all)",
        f"  fix: {METRICS}",
    ]


def test_a_schema_error_no_longer_hides_the_reference_errors_of_other_claims(write_yaml):
    text = VALID_FILE.replace("method: zero", "method: avg") + (
        "  - id: T9\n    statement: s\n    kind: ablation\n    mode: necessity\n    components: ['0.0']\n"
        "    method: zero\n    positions: Q\n    metric: accuracy\n    effect: relative_drop\n" + THRESHOLD
    )
    errors = errors_in(write_yaml, text)
    assert [(e.path, e.where.line) for e in errors] == [("claims.0.method", 16), ("claims.1.positions", 27)]


def test_names_are_checked_even_where_the_rest_of_a_claim_is_broken(write_yaml):
    errors = errors_in(write_yaml, VALID_FILE.replace("method: zero", "methd: zero").replace("metric: accuracy",
                                                                                             "metric: acc"))
    assert [e.path for e in errors] == ["claims.0", "claims.0.methd", "claims.0.metric"]
    assert errors[2].message == "unknown metric 'acc'"


def test_unreadable_parts_of_a_file_do_not_make_every_name_unknown(write_yaml):
    # positions: is a list, so no selection can be known: its own error, and no flood of unknown selections
    errors = errors_in(write_yaml, VALID_FILE.replace("positions:\n  Y: {role: Y}", "positions: [Y]"))
    assert [(e.path, e.message, e.fix) for e in errors] == [
        ("positions", "expected a mapping, got [Y]", "write a mapping: 'key: value' lines, or {key: value}")
    ]
    # a claim of an unknown kind: its kind is the error; its names cannot be read by type
    errors = errors_in(write_yaml, VALID_FILE.replace("kind: ablation", "kind: nope").replace("positions: Y\n    m",
                                                                                           "positions: Q\n    m"))
    assert [e.path for e in errors] == ["claims.0.kind"]


def test_a_valid_circuit_is_checked_beside_schema_errors(write_yaml):
    circuit = "circuits:\n  c: {edges: ['1.0 -> 0.0.k', '1.0 -> logits']}\n"  # the first edge goes backward
    text = VALID_FILE.replace("method: zero", "method: avg") + circuit
    errors = errors_in(write_yaml, text)
    assert [e.path for e in errors] == ["claims.0.method", "circuits.c.edges.0"]
    assert "does not go forward" in errors[1].message


@pytest.mark.parametrize("path", sorted(HYPOTHESES.rglob("*.yaml")), ids=lambda p: p.name)
def test_names_read_from_the_data_are_the_names_of_the_validated_spec(path: Path):
    data, smap = read_yaml(path)
    spec = hypothesis_model().model_validate(data)
    written = [found for found in references(spec) if found[0] in smap.values]  # not defaults
    assert list(references_in_data(hypothesis_model(), data)) == written


# --- generic branches, for fields the built-in kinds do not have ---------------------------------------------


@pytest.mark.parametrize(
    ("error", "message", "fix"),
    [
        ({"type": "too_long", "loc": ("claims",), "msg": "List should have at most 3 items", "ctx": {"max_length": 3}},
         "List should have at most 3 items", "give at most 3 item(s)"),
        ({"type": "string_too_long", "loc": ("name",), "msg": "String should have at most 9 characters",
          "ctx": {"max_length": 9}}, "String should have at most 9 characters", "shorten it to at most 9 characters"),
        ({"type": "string_pattern_mismatch", "loc": ("x",), "msg": "String should match pattern 'a+'",
          "ctx": {"pattern": "a+"}}, "String should match pattern 'a+'", "change it to match the pattern"),
        ({"type": "value_error", "loc": ("x",), "msg": "Value error, nope", "ctx": {}}, "nope", None),
    ],
)
def test_generic_messages(error, message, fix):
    smap = SourceMap("f.yaml", {}, {})
    found = explain(error | {"input": "x"}, error["loc"], hypothesis_model(), smap, Names(None, None, None),
                    frozenset(), {})
    assert found == (message, fix)


def test_a_key_valid_elsewhere_is_not_suggested_as_its_own_fix(write_yaml):
    # 'kind' is a key of claims and datasets, not of a threshold: the fix lists the threshold's keys instead of
    # "did you mean 'kind'?"
    err = one_error(write_yaml, VALID_FILE.replace("{at_least: 0.5}", "{at_least: 0.5, kind: x}"))
    assert (err.path, err.message) == ("claims.0.threshold.kind", "unknown key 'kind'")
    assert err.fix.startswith("remove it; the keys allowed here are ") and "at_least" in err.fix
    assert "'kind'" not in err.fix
