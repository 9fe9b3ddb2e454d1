"""Hostile hypothesis files, unit level: every one ends as a SpecError pinned to file:line:col, fast.

Report names that are paths, YAML bombs (aliases, deep nesting, huge files), numbers PyYAML cannot
build, non-finite bounds, and YAML 1.1 booleans read back where text was meant. The end-to-end
CLI cases of the same review live in test_hostile.py.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from circuitcheck.claims.ablation import RandomBaseline
from circuitcheck.claims.corruption import RefillSlots, ResampleTokens
from circuitcheck.errors import MAX_SHOWN_ERRORS, SpecError, SpecErrors
from circuitcheck.spec import yaml_source
from circuitcheck.spec.base import Strict
from circuitcheck.spec.hypothesis import REPORT_NAME, _model_types, hypothesis_model, load_hypothesis, report_stem
from circuitcheck.spec.yaml_source import MAX_YAML_BYTES, MAX_YAML_DEPTH, MAX_YAML_NODES, parse_yaml, read_yaml
from tests.conftest import VALID_FILE

BASE = VALID_FILE.lstrip("\n")
NO_ALIASES = "write the value out; anchors and aliases (&name / *name) are not allowed in hypothesis files"
NAME_MESSAGE = (
    "a report name must be one file name of at most 100 characters: a letter or digit, "
    "then letters, digits, '-', '_' or '.'"
)
NAME_FIX = "use letters, digits, '-', '_' and '.', e.g. 'trigram'"
FINITE_FIX = "write a finite number: a bound of .nan or .inf cannot be passed or failed meaningfully"
BILLION_LAUGHS = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]\n" for i in range(12)
)


def errors_of(path: Path) -> list[SpecError]:
    with pytest.raises((SpecError, SpecErrors)) as info:
        load_hypothesis(path)
    err = info.value
    return err.errors if isinstance(err, SpecErrors) else [err]


def only_error(path: Path) -> SpecError:
    (err,) = errors_of(path)
    return err


def quick(call: Any, seconds: float = 2.0) -> SpecError:
    """``call()`` must raise a SpecError within ``seconds``."""
    start = time.perf_counter()
    with pytest.raises(SpecError) as info:
        call()
    assert time.perf_counter() - start < seconds
    return info.value


def named(name: str) -> str:
    return BASE.replace("version: 1\n", f"version: 1\nname: {name}\n")


# 1. report names decide where the reports go


@pytest.mark.parametrize(
    ("yaml_name", "shown"),
    [
        ("/tmp/x", "'/tmp/x'"),
        ("../../../x", "'../../../x'"),
        ("../hypotheses/foo", "'../hypotheses/foo'"),
        ("'a/b'", "'a/b'"),
        ("'a\\b'", "'a\\\\b'"),
        ('"a\\0b"', "'a\\x00b'"),
        ('"a\\x1bb"', "'a\\x1bb'"),
        ('"abc\\n"', "'abc\\n'"),
        (".hidden", "'.hidden'"),
        ("..", "'..'"),
        ("-rf", "'-rf'"),
        ("'a b'", "'a b'"),
        ('"caf\\u00e9"', "'caf\u00e9'"),
        ("'" + "a" * 101 + "'", "'" + "a" * 79 + "... (103 characters)"),
    ],
)
def test_a_report_name_that_is_not_one_safe_file_name_is_refused(write_yaml, yaml_name, shown):
    err = only_error(write_yaml(named(yaml_name)))
    assert (err.where.line, err.where.col, err.path) == (2, 7, "name")
    assert err.message == f"{NAME_MESSAGE}, got {shown}"
    assert err.fix == NAME_FIX


def test_the_report_name_message_in_full(write_yaml):
    path = write_yaml(named("../../escape"))
    with pytest.raises(
        SpecErrors, match=re.escape(f"{path}:2:7: name: {NAME_MESSAGE}, got '../../escape'\n  fix: {NAME_FIX}")
    ):
        load_hypothesis(path)


@pytest.mark.parametrize("name", ["trigram", "T8.v2", "caesar_2-b", "a" * 100, "7z"])
def test_safe_report_names_load(write_yaml, name):
    spec, _ = load_hypothesis(write_yaml(named(name)))
    assert spec.name == name
    assert report_stem(spec, Path("elsewhere.yaml")) == name


def test_the_default_report_name_is_the_file_stem_made_safe(write_yaml):
    spec, _ = load_hypothesis(write_yaml(BASE, name="my hyp (v2).yaml"))
    assert spec.name is None
    assert report_stem(spec, Path("my hyp (v2).yaml")) == "my-hyp-v2-"
    assert report_stem(spec, Path("trigram.yaml")) == "trigram"
    assert report_stem(spec, Path(".yaml")) == "yaml"
    assert report_stem(spec, Path("\u00e9\u00e9.yaml")) == "hypothesis"
    assert report_stem(spec, Path("...yaml")) == "hypothesis"
    assert report_stem(spec, Path("x" * 300 + ".yaml")) == "x" * 100


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=150))
def test_any_file_name_gives_a_stem_the_name_field_would_accept(stem):
    spec = hypothesis_model().model_validate(parse_yaml(BASE, "h.yaml")[0])
    out = report_stem(spec, Path(f"{stem}.yaml"))
    assert re.fullmatch(REPORT_NAME.removesuffix("$"), out)
    hypothesis_model().model_validate(parse_yaml(BASE, "h.yaml")[0] | {"name": out})


def test_the_schema_carries_the_report_name_pattern():
    assert hypothesis_model().model_json_schema()["properties"]["name"]["anyOf"][0]["pattern"] == REPORT_NAME


# 2. bounded YAML


def test_billion_laughs_is_refused_at_the_first_anchor_fast(write_yaml):
    path = write_yaml(BILLION_LAUGHS + "version: 1\n")
    err = quick(lambda: load_hypothesis(path))
    assert str(err) == f"{path}:1:4: YAML anchor &a is not allowed\n  fix: {NO_ALIASES}"


def test_an_alias_is_refused_at_the_alias(write_yaml):
    path = write_yaml("version: 1\nmodel: *m\n")
    with pytest.raises(SpecError, match=re.escape(f"{path}:2:8: YAML alias *m is not allowed\n  fix: {NO_ALIASES}")):
        load_hypothesis(path)


def test_an_anchor_on_a_plain_value_is_refused(write_yaml):
    path = write_yaml(BASE.replace("statement: The", "statement: &s The"))
    with pytest.raises(SpecError, match=re.escape(f"{path}:12:16: YAML anchor &s is not allowed")):
        load_hypothesis(path)


def test_a_merge_key_is_refused(write_yaml):
    path = write_yaml(BASE.replace("  seed: 1\n", "  <<: {seed: 1}\n"))
    with pytest.raises(SpecError, match=re.escape(f"{path}:6:3: dataset: mapping keys must be plain strings")):
        load_hypothesis(path)


DEPTH_MESSAGE = f"the data is nested too deep: more than {MAX_YAML_DEPTH} levels of mappings and lists"


@pytest.mark.parametrize(
    "text",
    [
        "a: " + "[" * 100_000 + "]" * 100_000 + "\n",
        "a: " + "[" * 100_000,
        "a: " + "{b: " * 3000 + "1" + "}" * 3000 + "\n",
        "".join(" " * i + "a:\n" for i in range(1000)) + " " * 1000 + "1\n",
        "".join(" " * i + "-\n" for i in range(1000)),
    ],
    ids=["brackets", "unclosed", "braces", "block-mappings", "block-lists"],
)
def test_deep_nesting_is_refused_fast_without_recursion(write_yaml, text):
    path = write_yaml(text)
    err = quick(lambda: read_yaml(path))
    assert err.message == DEPTH_MESSAGE
    assert err.fix == "flatten it; a hypothesis file needs a handful of levels"
    assert err.where.line > 1 or err.where.col > MAX_YAML_DEPTH


def test_the_depth_limit_is_exact():
    def nested(depth: int) -> str:
        return "[" * depth + "]" * depth

    data, _ = parse_yaml(nested(MAX_YAML_DEPTH), "d.yaml")
    for _ in range(MAX_YAML_DEPTH - 1):
        (data,) = data
    assert data == []
    with pytest.raises(SpecError, match=re.escape(f"d.yaml:1:{MAX_YAML_DEPTH + 1}: {DEPTH_MESSAGE}")):
        parse_yaml(nested(MAX_YAML_DEPTH + 1), "d.yaml")


def test_a_file_over_the_size_limit_is_refused_before_parsing(tmp_path):
    path = tmp_path / "big.yaml"
    path.write_bytes(b"a: 1\n#" + b"x" * (MAX_YAML_BYTES - 6) + b"\n")
    err = quick(lambda: read_yaml(path))
    assert str(err) == (
        f"{path}:1:1: the file is over {MAX_YAML_BYTES} bytes, the limit for a hypothesis file\n"
        "  fix: split the claims over several files; token data belongs in a dataset file ('kind: file')"
    )
    path.write_bytes(b"a: 1\n#" + b"x" * (MAX_YAML_BYTES - 7) + b"\n")
    assert read_yaml(path)[0] == {"a": 1}


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="needs /dev/zero")
def test_an_endless_file_is_refused_fast():
    assert "bytes" in quick(lambda: read_yaml(Path("/dev/zero"))).message


def test_the_value_count_limit_is_exact(monkeypatch):
    monkeypatch.setattr(yaml_source, "MAX_YAML_NODES", 5)
    assert parse_yaml("[1, 2, 3, 4]", "n.yaml")[0] == [1, 2, 3, 4]
    with pytest.raises(SpecError, match=re.escape("n.yaml:1:14: the file holds more than 5 values")):
        parse_yaml("[1, 2, 3, 4, 5, 6]", "n.yaml")


def test_the_largest_file_allowed_is_answered_within_seconds(write_yaml):
    """The worst case under both limits: as many values as the limit allows, in a valid field."""
    items = ",".join(["1"] * (MAX_YAML_NODES + 10))
    path = write_yaml(BASE.replace("Y: {role: Y}", f"Y: {{indices: [{items}]}}"))
    assert path.stat().st_size < MAX_YAML_BYTES
    err = quick(lambda: load_hypothesis(path), seconds=10.0)
    assert err.message == f"the file holds more than {MAX_YAML_NODES} values, the limit for a hypothesis file"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("0x_", "YAML cannot read '0x_' as a number"),
        ("-0b__", "YAML cannot read '-0b__' as a number"),
        ("1" * 5000, "a number of 5000 characters is too long (at most 100)"),
        ("1" + ":1" * 60, "a number of 121 characters is too long (at most 100)"),
    ],
)
def test_numbers_pyyaml_cannot_build_are_pinned(write_yaml, value, message):
    path = write_yaml(BASE.replace("seed: 1", f"seed: {value}"))
    with pytest.raises(SpecError, match=re.escape(f"{path}:6:9: dataset.seed: {message}")):
        load_hypothesis(path)


def test_a_huge_number_as_a_key_is_refused_as_text(write_yaml):
    """Keys are names: a 5000-digit key is never converted to an int, it is an unknown key."""
    path = write_yaml(BASE + "? " + "1" * 5000 + "\n: 2\n")
    with pytest.raises((SpecError, SpecErrors), match="unknown key '1111"):
        load_hypothesis(path)


def test_a_yaml11_boolean_key_is_read_as_its_text(write_yaml):
    path = write_yaml(BASE + "off: 0\n")
    with pytest.raises((SpecError, SpecErrors), match="unknown key 'off'"):
        load_hypothesis(path)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="&*ab[]{}:,-? \n0x_.!|>'\"#", max_size=80))
def test_yaml_shaped_text_gives_data_or_a_spec_error(text):
    try:
        parse_yaml(text, "fuzz.yaml")
    except SpecError as err:
        assert str(err).startswith("fuzz.yaml:")


def test_thousands_of_problems_print_the_first_few(write_yaml):
    path = write_yaml(BASE + "".join(f"k{i}: 1\n" for i in range(200)))
    with pytest.raises(SpecErrors) as info:
        load_hypothesis(path)
    assert len(info.value.errors) == MAX_SHOWN_ERRORS
    assert info.value.omitted == 200 - MAX_SHOWN_ERRORS
    lines = str(info.value).splitlines()
    assert lines[-1] == f"... and {200 - MAX_SHOWN_ERRORS} more problems; fix these first"
    assert len(lines) == 2 * MAX_SHOWN_ERRORS + 1


# 3. finite numbers


@pytest.mark.parametrize(
    ("bound", "col", "shown"),
    [
        ("at_least: .nan", 27, "nan"),
        ("at_most: .inf", 26, "inf"),
        ("at_least: -.inf", 27, "-inf"),
        ("at_most: .NaN", 26, "nan"),
    ],
)
@pytest.mark.parametrize(
    "expect", ["", "\n    expect: refuted\n    expect_reason: x", "\n    expect: known_failure\n    expect_reason: x"]
)
def test_non_finite_thresholds_are_refused(write_yaml, bound, col, shown, expect):
    path = write_yaml(BASE.replace("{at_least: 0.5}", f"{{{bound}}}{expect}"))
    field = bound.split(":")[0]
    expected = (
        f"{path}:20:{col}: claims.0.threshold.{field}: expected a finite number, got {shown}\n  fix: {FINITE_FIX}"
    )
    with pytest.raises(SpecErrors, match=f"^{re.escape(expected)}$"):
        load_hypothesis(path)


@pytest.mark.parametrize(
    ("edit", "path"),
    [
        ("    regression_tolerance: .inf\n", "claims.0.regression_tolerance"),
        ("    floor: {quantile: 0.1, at_least: .nan}\n", "claims.0.floor.at_least"),
        ("    floor: {quantile: .nan, at_least: 0.1}\n", "claims.0.floor.quantile"),
        ("    random_baseline: {n: 10, seed: 0, alpha: .nan}\n", "claims.0.random_baseline.alpha"),
    ],
)
def test_other_bounds_are_finite_too(write_yaml, edit, path):
    file = write_yaml(BASE + edit)
    errs = [e for e in errors_of(file) if e.path == path]
    assert [e.fix for e in errs] == [FINITE_FIX]


def _spec_models() -> list[type[BaseModel]]:
    found: list[type[BaseModel]] = []
    todo: list[Any] = [hypothesis_model()]
    while todo:
        cls = todo.pop()
        if isinstance(cls, type) and issubclass(cls, BaseModel) and cls not in found:
            found.append(cls)
            for field in cls.model_fields.values():
                todo.extend(_model_types(field.annotation))
    return found


def test_every_spec_model_is_strict_and_finite():
    models = _spec_models()
    assert len(models) > 20
    for cls in models:
        assert issubclass(cls, Strict), cls
        assert cls.model_config.get("allow_inf_nan") is False, cls
        assert cls.model_config.get("extra") == "forbid" and cls.model_config.get("frozen"), cls


PROBABILITIES = {"quantile", "alpha", "confidence", "above", "holdout", "silent_below", "density"}


def test_every_probability_field_lies_in_the_unit_interval():
    seen = set()
    for cls in _spec_models():
        for name, field in cls.model_fields.items():
            if name not in PROBABILITIES:
                continue
            seen.add(name)
            low = [getattr(m, a) for m in field.metadata for a in ("ge", "gt") if getattr(m, a, None) is not None]
            high = [getattr(m, a) for m in field.metadata for a in ("le", "lt") if getattr(m, a, None) is not None]
            assert low and min(low) >= 0.0 and high and max(high) <= 1.0, f"{cls.__name__}.{name}"
    assert seen == PROBABILITIES


@pytest.mark.parametrize("model", [RandomBaseline, ResampleTokens, RefillSlots])
def test_seeds_fit_torch_generators(model):
    fields = {
        RandomBaseline: {"n": 10}, ResampleTokens: {"scheme": "resample_tokens", "positions": "Y"},
        RefillSlots: {"scheme": "refill", "slots": ["A"]},
    }[model]
    assert model.model_validate(fields | {"seed": 2**63 - 1}).seed == 2**63 - 1
    for bad in (2**63, -1):
        with pytest.raises(ValidationError):
            model.model_validate(fields | {"seed": bad})


# 4. YAML 1.1 booleans where text was meant


def test_expect_no_says_to_quote_it(write_yaml):
    path = write_yaml(BASE + "    expect: no\n    expect_reason: x\n")
    expected = (
        f"{path}:21:13: claims.0.expect: expected 'holds', 'refuted' or 'known_failure', got False\n"
        "  fix: YAML reads unquoted no as the boolean false; quote it: 'no'"
    )
    with pytest.raises(SpecErrors, match=f"^{re.escape(expected)}$"):
        load_hypothesis(path)


@pytest.mark.parametrize("word", ["yes", "No", "ON", "off", "true", "False"])
def test_unquoted_booleans_in_text_fields_say_to_quote_them(write_yaml, word):
    path = write_yaml(BASE.replace("statement: The head is necessary.", f"statement: {word}"))
    err = only_error(path)
    value = "true" if word.lower() in ("yes", "on", "true") else "false"
    assert (err.path, err.where.line, err.where.col) == ("claims.0.statement", 12, 16)
    assert err.fix == f"YAML reads unquoted {word} as the boolean {value}; quote it: '{word}'"


def test_a_boolean_in_a_list_of_text_says_to_quote_it(write_yaml):
    err = only_error(write_yaml(BASE.replace('components: ["0.0"]', "components: [off]")))
    assert err.path == "claims.0.components.0"
    assert err.fix == "YAML reads unquoted off as the boolean false; quote it: 'off'"


@pytest.mark.parametrize("value", ["'no'", "y", "n"])
def test_text_that_yaml_keeps_as_text_gets_no_boolean_hint(write_yaml, value):
    err = only_error(write_yaml(BASE + f"    expect: {value}\n    expect_reason: x\n"))
    assert err.path == "claims.0.expect"
    assert err.fix is None


def test_a_boolean_where_a_boolean_belongs_is_fine(write_yaml):
    spec, _ = load_hypothesis(write_yaml(BASE.replace("Y: {role: Y}", "Y: {all: yes}")))
    assert spec.positions["Y"].all is True
