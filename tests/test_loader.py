"""The hypothesis loader: strict, safe, and every rejection pinned to file:line:col."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from circuitcheck.errors import SpecError, SpecErrors
from circuitcheck.spec.hypothesis import load_hypothesis
from circuitcheck.spec.yaml_source import parse_yaml
from tests.conftest import VALID_FILE


def errors_of(path: Path) -> list[SpecError]:
    with pytest.raises((SpecError, SpecErrors)) as info:
        load_hypothesis(path)
    err = info.value
    return err.errors if isinstance(err, SpecErrors) else [err]


def test_valid_file_loads(write_yaml):
    spec, _ = load_hypothesis(write_yaml(VALID_FILE))
    assert spec.claims[0].id == "T8"
    assert spec.claims[0].method == "zero"


def test_unknown_key_is_pinned_to_its_line(write_yaml):
    path = write_yaml(VALID_FILE.replace("    method: zero\n", "    method: zero\n    methd: mean\n"))
    (err,) = errors_of(path)
    assert str(err).startswith(f"{path}:17:5: claims.0.methd: unknown key 'methd'")
    assert err.fix == "did you mean 'method'?"


def test_wrong_type_is_pinned_to_the_value(write_yaml):
    path = write_yaml(VALID_FILE.replace("n_seqs: 50", "n_seqs: many"))
    (err,) = errors_of(path)
    assert re.match(rf"{re.escape(str(path))}:5:11: dataset.n_seqs: .*integer.*got 'many'", str(err))


def test_bad_method_lists_choices(write_yaml):
    path = write_yaml(VALID_FILE.replace("method: zero", "method: avg"))
    (err,) = errors_of(path)
    assert str(err).startswith(f"{path}:16:13: claims.0.method: expected 'zero', 'mean' or 'resample', got 'avg'")


def test_duplicate_key_names_both_lines(write_yaml):
    path = write_yaml(VALID_FILE.replace("  seed: 1\n", "  seed: 1\n  seed: 2\n"))
    (err,) = errors_of(path)
    assert str(err).startswith(f"{path}:7:3: dataset.seed: duplicate key 'seed' (first defined on line 6)")


def test_python_tag_is_refused_and_not_executed(write_yaml, tmp_path):
    marker = tmp_path / "pwned"
    path = write_yaml(VALID_FILE + f"extra: !!python/object/apply:os.system ['touch {marker}']\n")
    (err,) = errors_of(path)
    assert f"{path}:21:8: extra: YAML tag" in str(err)
    assert "python/object/apply" in str(err)
    assert not marker.exists()


def test_empty_file(write_yaml):
    (err,) = errors_of(write_yaml(""))
    assert str(err).endswith("the file is empty\n  fix: copy hypotheses/trigram.yaml as a starting point")
    assert ":1:1:" in str(err)


def test_unknown_claim_kind(write_yaml):
    path = write_yaml(VALID_FILE.replace("kind: ablation", "kind: ablashun"))
    (err,) = errors_of(path)
    assert str(err).startswith(f"{path}:13:11: claims.0.kind: ")
    assert "'ablation'" in str(err) and "'association'" in str(err)


def test_unknown_selection_and_metric_reported_together(write_yaml):
    text = VALID_FILE.replace("positions: Y\n    metric: accuracy", "positions: Z\n    metric: acc")
    errs = errors_of(write_yaml(text))
    messages = [e.message for e in errs]
    assert "unknown position selection 'Z'" in messages
    assert "unknown metric 'acc'" in messages
    assert [e.where.line for e in errs] == [17, 18]


def test_duplicate_claim_ids(write_yaml):
    claim = VALID_FILE.split("claims:\n")[1]
    (err,) = errors_of(write_yaml(VALID_FILE + claim))
    assert "claim id 'T8' is used twice" in str(err)


def test_necessity_needs_effect(write_yaml):
    (err,) = errors_of(write_yaml(VALID_FILE.replace("    effect: relative_drop\n", "")))
    assert "effect" in err.message and err.where.line == 11


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_any_text_gives_data_or_a_spec_error(text):
    try:
        parse_yaml(text, "fuzz.yaml")
    except SpecError as err:
        assert str(err).startswith("fuzz.yaml:")


@settings(max_examples=60, deadline=None)
@given(
    key=st.from_regex(r"[a-z_]{3,12}", fullmatch=True).filter(
        lambda k: k not in {"id", "statement", "kind", "mode", "components", "method", "positions", "metric",
                            "effect", "threshold", "seed_figure", "resample_seed", "ablate_at"}
    ),
    value=st.integers(),
)
def test_any_unknown_claim_key_is_pinned(tmp_path_factory, key, value):
    path = tmp_path_factory.mktemp("p") / "h.yaml"
    path.write_text(
        VALID_FILE.lstrip("\n").replace("    metric: accuracy\n", f"    metric: accuracy\n    {key}: {value}\n")
    )
    (err,) = errors_of(path)
    assert str(err).startswith(f"{path}:19:5: claims.0.{key}: unknown key '{key}'")


@settings(max_examples=60, deadline=None)
@given(st.floats(min_value=-10, max_value=10, allow_nan=False), st.sampled_from(["at_least", "at_most"]))
def test_thresholds_round_trip(tmp_path_factory, value, bound):
    path = tmp_path_factory.mktemp("t") / "h.yaml"
    path.write_text(VALID_FILE.lstrip("\n").replace("{at_least: 0.5}", f"{{{bound}: {value!r}}}")
                    + "    allow_vacuous: true\n    vacuous_reason: a loader round trip, whatever the bound\n")
    spec, _ = load_hypothesis(path)
    threshold = spec.claims[0].threshold
    assert getattr(threshold, bound) == value
    assert threshold.passes(value)


def test_did_you_mean_uses_the_yaml_spelling_of_aliased_keys(write_yaml):
    text = VALID_FILE.replace("kind: ablation", "kind: replacement").replace(
        '    mode: necessity\n    components: ["0.0"]\n    method: zero\n',
        "    replace: [{component: mlp0, wiht: zero}]\n",
    ).replace("    effect: relative_drop\n", "")
    errs = errors_of(write_yaml(text))
    assert any(e.message == "unknown key 'wiht'" and e.fix == "did you mean 'with'?" for e in errs)
