"""The component syntax: one parser, run when the file loads, into frozen values."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from circuitcheck.errors import SpecError, SpecErrors
from circuitcheck.plan.components import model_components, resolve_component
from circuitcheck.spec.components import (
    COMPONENT_FIX,
    RECEIVER_FIX,
    Attn,
    ComponentSyntaxError,
    Embed,
    Head,
    HeadInput,
    Hook,
    Logits,
    Mlp,
    PosEmbed,
    parse_component,
    parse_head,
    parse_receiver,
)
from circuitcheck.spec.hypothesis import hypothesis_model, load_hypothesis
from tests.conftest import VALID_FILE

BASE = VALID_FILE.lstrip("\n")
ABLATION = """    kind: ablation
    mode: necessity
    components: ["0.0"]
    method: zero
    positions: Y
    metric: accuracy
    effect: relative_drop"""


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("embed", Embed()),
        ("pos_embed", PosEmbed()),
        ("1.0", Head(1, 0)),
        ("12.34", Head(12, 34)),
        ("attn2", Attn(2)),
        ("mlp0", Mlp(0)),
        ("blocks.0.hook_resid_mid", Hook("blocks.0.hook_resid_mid")),
        ("hook_embed", Hook("hook_embed")),
        ("blocks.1.attn.hook_patern", Hook("blocks.1.attn.hook_patern")),  # a typo: the model check names it
    ],
)
def test_each_form_parses_to_its_value_and_prints_back(text, value):
    assert parse_component(text) == value
    assert str(value) == text


@pytest.mark.parametrize(
    "text", ["", "x", "head0", "L0", "1.", ".1", "1.0.q", "mlp", "attn-1", "0.0 ", " embed", "0.0\n", "١.٠"]
)
def test_text_that_is_no_component_is_refused_with_the_syntax(text):
    with pytest.raises(ComponentSyntaxError) as info:
        parse_component(text)
    assert info.value.message == f"cannot parse component {text!r}"
    assert info.value.fix == COMPONENT_FIX


def test_values_are_frozen_and_hashable():
    head = parse_component("1.0")
    with pytest.raises(dataclasses.FrozenInstanceError):
        head.layer = 2  # type: ignore[misc, union-attr]
    assert len({parse_component("1.0"), Head(1, 0), parse_component("mlp1")}) == 2


def test_heads_and_receivers():
    assert parse_head("2.1") == Head(2, 1)
    with pytest.raises(ComponentSyntaxError, match=r"^expected a head as 'L\.H', got 'mlp0'$"):
        parse_head("mlp0")
    assert parse_receiver("1.2.k") == HeadInput(Head(1, 2), "k")
    assert str(parse_receiver("1.2.k")) == "1.2.k"
    assert parse_receiver("logits") == Logits()
    assert parse_receiver("mlp1") == Mlp(1)
    assert parse_receiver("attn1") == Attn(1)  # parses; path patching refuses it when it compiles
    with pytest.raises(ComponentSyntaxError) as info:
        parse_receiver("1.0.x")
    assert (info.value.message, info.value.fix) == ("unknown receiver '1.0.x'", RECEIVER_FIX)


@given(st.integers(0, 10**6), st.integers(0, 10**6))
def test_a_head_prints_back_to_what_parses_to_it(layer, head):
    value = Head(layer, head)
    assert parse_component(str(value)) == value
    assert parse_head(str(value)) == value


def test_the_spec_holds_parsed_values_and_dumps_the_text(write_yaml):
    text = BASE.replace('components: ["0.0"]', 'components: ["0.0", attn1, embed, blocks.0.hook_resid_mid]')
    spec, _ = load_hypothesis(write_yaml(text))
    claim = spec.claims[0]
    assert claim.components == [Head(0, 0), Attn(1), Embed(), Hook("blocks.0.hook_resid_mid")]
    assert claim.model_dump()["components"] == ["0.0", "attn1", "embed", "blocks.0.hook_resid_mid"]


def test_the_schema_shows_component_fields_as_text():
    schema = hypothesis_model().model_json_schema()
    ablation = schema["$defs"]["AblationClaim"]["properties"]["components"]
    assert ablation["items"] == {"type": "string"}
    assert schema["$defs"]["PathPatchingClaim"]["properties"]["sender"]["type"] == "string"


def _only(path: Path) -> SpecError:
    with pytest.raises((SpecError, SpecErrors)) as info:
        load_hypothesis(path)
    err = info.value
    (first,) = err.errors if isinstance(err, SpecErrors) else [err]
    return first


@pytest.mark.parametrize(
    ("claim", "where", "message", "fix"),
    [
        (
            ABLATION.replace('["0.0"]', '["0.0", "head0"]'),
            "15:25: claims.0.components.1",
            "cannot parse component 'head0'",
            COMPONENT_FIX,
        ),
        ('    kind: ov_copying\n    head: "1"', "14:11: claims.0.head", "expected a head as 'L.H', got '1'", None),
        (
            '    kind: path_patching\n    sender: "0.0"\n    receivers: ["1.0.x", logits]\n    method: zero\n'
            "    positions: Y\n    metric: accuracy\n    effect: absolute_drop",
            "15:17: claims.0.receivers.0", "unknown receiver '1.0.x'", RECEIVER_FIX,
        ),
        (
            '    kind: replacement\n    replace: [{component: "mlpX", with: zero}]\n'
            "    positions: Y\n    metric: accuracy",
            "14:27: claims.0.replace.0.component", "cannot parse component 'mlpX'", COMPONENT_FIX,
        ),
    ],
)
def test_syntax_errors_are_pinned_to_the_file_when_it_loads(write_yaml, claim, where, message, fix):
    path = write_yaml(BASE.replace(ABLATION, claim))
    err = _only(path)
    assert f"{err.where.line}:{err.where.col}: {err.path}" == where
    assert (err.message, err.fix) == (message, fix)
    assert str(err) == f"{path}:{where}: {message}" + (f"\n  fix: {fix}" if fix else "")


def test_the_model_check_takes_the_parsed_value(tiny_model):
    assert [str(c) for c in model_components(tiny_model)][:3] == ["embed", "pos_embed", "0.0"]
    (site,) = resolve_component(tiny_model, parse_component("1.2"), ())
    assert (site.hook, site.head) == ("blocks.1.attn.hook_z", 2)
    assert len(resolve_component(tiny_model, parse_component("attn0"), ())) == 3
