"""The claim contract: what @claim_kind checks, what Measurement and ClaimPlan require, references by type."""

from __future__ import annotations

import re
from typing import Literal

import pytest
import torch

from circuitcheck.claims.base import ClaimKindError, ClaimSpec, CompileContext, claim_kind, claim_kinds
from circuitcheck.claims.base import sequence_sums as _sequence_sums
from circuitcheck.errors import SpecError, SpecErrors
from circuitcheck.metrics import metrics
from circuitcheck.plan.interventions import ClaimOutputs, ClaimPlan, Measurement, reads
from circuitcheck.plugins import load_extensions
from circuitcheck.spec import hypothesis
from circuitcheck.spec.base import Strict
from circuitcheck.spec.hypothesis import load_hypothesis
from circuitcheck.spec.references import CLAIM, METRIC, SELECTION, MetricName, Selection, references
from circuitcheck.stats import SequenceStats, safe_ratio
from circuitcheck.testing import check_claim_kind
from tests.conftest import VALID_FILE


@pytest.fixture
def scratch_registry(monkeypatch):
    """Kinds registered in a test are gone after it (and the file model is rebuilt without them)."""
    load_extensions()  # the built-in kinds first, into the registry that stays
    monkeypatch.setattr(claim_kinds, "_items", dict(claim_kinds._items))
    hypothesis.hypothesis_model.cache_clear()
    hypothesis._known_keys.cache_clear()
    yield
    hypothesis.hypothesis_model.cache_clear()
    hypothesis._known_keys.cache_clear()


def _compile(self, ctx: CompileContext) -> ClaimPlan:
    raise NotImplementedError


def refusal(cls: object) -> str:
    with pytest.raises(ClaimKindError) as info:
        claim_kind(cls)  # type: ignore[arg-type]
    return str(info.value)


# --- @claim_kind: each rule, and a message that names the class, the rule and the fix -------------------------


class NoDocstringClaim(ClaimSpec):
    kind: Literal["no_docstring"] = "no_docstring"
    compile = _compile


def test_a_kind_without_a_docstring_is_refused_with_the_whole_message():
    assert refusal(NoDocstringClaim) == (
        "cannot register claim kind tests.test_claim_contract.NoDocstringClaim:\n"
        "  it has no docstring: the docstring is the kind's description in `circuitcheck schema` and in editors\n"
        "    fix: add one under the class line saying what the claim asserts and what its estimate is, "
        'e.g. """Ablating `components` hurts `metric`: estimate = the drop."""'
    )


def test_a_class_that_is_not_a_claim_spec_is_refused():
    class Loose(Strict):
        """Not a claim."""

        kind: Literal["loose"] = "loose"

    message = refusal(Loose)
    assert "Loose" in message and "subclasses of circuitcheck.claims.base.ClaimSpec" in message
    assert "fix: declare it as `class Loose(ClaimSpec):`" in message
    assert "ClaimSpec" in refusal(len)  # not even a class


def test_a_kind_without_a_literal_tag_is_refused():
    class TokenCountClaim(ClaimSpec):
        """Counts tokens."""

        compile = _compile

    message = refusal(TokenCountClaim)
    assert "its 'kind' field is str, not a tag of one value" in message
    assert 'fix: declare `kind: Literal["token_count"] = "token_count"`' in message


def test_a_tag_of_several_values_is_refused():
    class TwoClaim(ClaimSpec):
        """Two tags."""

        kind: Literal["a", "b"] = "a"
        compile = _compile

    assert "not a tag of one value" in refusal(TwoClaim)


def test_a_tag_whose_default_differs_is_refused():
    class MismatchClaim(ClaimSpec):
        """Mismatched."""

        kind: Literal["mismatch"] = "other"  # type: ignore[assignment]
        compile = _compile

    message = refusal(MismatchClaim)
    assert "its 'kind' is Literal['mismatch'] but defaults to 'other'" in message
    assert 'fix: give the tag as its own default: `kind: Literal["mismatch"] = "mismatch"`' in message


def test_a_kind_without_compile_is_refused():
    class LazyClaim(ClaimSpec):
        """Compiles nothing."""

        kind: Literal["lazy"] = "lazy"

    message = refusal(LazyClaim)
    assert "it does not define compile(self, ctx)" in message
    assert "fix: add `def compile(self, ctx: CompileContext) -> ClaimPlan:`" in message


@pytest.mark.parametrize("signature", ["(self)", "(self, ctx, model)", "(ctx)"])
def test_compile_with_the_wrong_arguments_is_refused(signature):
    namespace: dict = {}
    exec(f"def compile{signature}:\n    raise NotImplementedError", namespace)

    class OddClaim(ClaimSpec):
        """Odd compile."""

        kind: Literal["odd"] = "odd"
        compile = namespace["compile"]

    message = refusal(OddClaim)
    assert f"compile{signature} cannot be called as compile(ctx)" in message
    assert "OddClaim" in message


def test_a_static_compile_is_refused():
    class StaticClaim(ClaimSpec):
        """Static compile."""

        kind: Literal["static"] = "static"

        @staticmethod
        def compile(ctx: CompileContext) -> ClaimPlan:  # type: ignore[override]
            raise NotImplementedError

    assert "its compile is a staticmethod, not a plain method" in refusal(StaticClaim)


def test_a_threshold_override_is_refused():
    class LenientClaim(ClaimSpec):
        """No threshold."""

        kind: Literal["lenient"] = "lenient"
        threshold: None = None  # type: ignore[assignment]
        compile = _compile

    message = refusal(LenientClaim)
    assert "its 'threshold' field is None, not a required Threshold" in message
    assert "fix: remove the override" in message


def test_every_broken_rule_is_listed_at_once():
    class BareClaim(ClaimSpec):
        pass

    message = refusal(BareClaim)
    assert message.startswith("cannot register claim kind tests.test_claim_contract.")
    assert len(re.findall(r"\n    fix: ", message)) == 3  # tag, compile, docstring


def test_a_refused_kind_is_not_registered():
    before = claim_kinds.names()
    refusal(NoDocstringClaim)
    assert claim_kinds.names() == before and "no_docstring" not in claim_kinds


# --- Measurement says how uncertain it is; ClaimPlan is built by name -------------------------------------------


def test_a_measurement_needs_stats_or_exact():
    with pytest.raises(TypeError, match=r"^Measurement\(0\.5, \.\.\.\) says nothing about its uncertainty: give "
                       r"stats=SequenceStats\(\.\.\.\)"):
        Measurement(0.5, "found")
    with pytest.raises(ValueError, match="has stats and exact=True"):
        Measurement(0.5, "found", stats=SequenceStats({"n": torch.ones(2)}, lambda t: t["n"]), exact=True)
    assert Measurement(0.5, "found", exact=True).stats is None


def test_claim_plan_is_keyword_only():
    def score(out: ClaimOutputs) -> Measurement:
        return Measurement(0.0, "", exact=True)

    with pytest.raises(TypeError):
        ClaimPlan("c", "k", {}, frozenset(), (), score)  # type: ignore[misc]
    plan = ClaimPlan(claim_id="c", kind="k", variants={}, captures=frozenset(), describe=(), score=score)
    assert plan.depends_on == () and plan.derive is None


# --- validate checks references by the field's type, nested fields included -------------------------------------


class Window(Strict):
    """A nested model with references."""

    at: Selection
    also: list[Selection] = []


class WindowedClaim(ClaimSpec):
    """Mean of ``metric`` at ``window.at``; a test kind whose references sit in nested and optional fields."""

    kind: Literal["windowed_test"] = "windowed_test"
    window: Window
    extra: Selection | None = None
    metric: MetricName
    also_scored_by: dict[str, MetricName] = {}
    not_a_reference: str = "Q"

    def compile(self, ctx: CompileContext) -> ClaimPlan:
        metric, mask = ctx.metric(self.metric), ctx.scored(self.window.at, "window")

        def score(out: ClaimOutputs) -> Measurement:
            per_seq = {"n": mask.sum(1).double(), "sum": _sequence_sums(out, None, metric, mask)}
            stats = SequenceStats(per_seq, lambda t: safe_ratio(t["sum"], t["n"]))
            return Measurement(stats.estimate(), "mean", stats=stats)

        return ClaimPlan(
            claim_id=self.id, kind=self.kind, variants={}, captures=frozenset(), describe=("mean",), score=score,
            reads=reads([None], [metric], mask),
        )


def test_references_walks_nested_optional_list_and_dict_fields():
    claim = WindowedClaim.model_validate(dict(
        id="w", statement="s", threshold={"at_least": 0}, window={"at": "Y", "also": ["a", "b"]}, extra="e",
        metric="kl", also_scored_by={"first": "loss"},
    ))
    found = [(".".join(map(str, path)), ref, name) for path, ref, name in references(claim)]
    assert found == [
        ("window.at", SELECTION, "Y"), ("window.also.0", SELECTION, "a"), ("window.also.1", SELECTION, "b"),
        ("extra", SELECTION, "e"), ("metric", METRIC, "kl"), ("also_scored_by.first", METRIC, "loss"),
    ]


WINDOWED = """
  - id: W
    statement: s
    kind: windowed_test
    window: {at: Y, also: [Y, nope]}
    extra: gone
    metric: accuracy
    also_scored_by: {first: accuracy, second: acuracy}
    not_a_reference: anything
    threshold: {at_least: 0.5}
"""


def test_a_new_kind_s_references_are_checked_by_type(write_yaml, scratch_registry):
    claim_kind(WindowedClaim)
    path = write_yaml(VALID_FILE + WINDOWED.lstrip("\n"))
    with pytest.raises(SpecErrors) as info:
        load_hypothesis(path)
    lines = path.read_text().splitlines()
    got = [(e.where.line, e.path, e.message, e.fix) for e in info.value.errors]
    known = "define it under 'positions:' (known: Y, all)"
    assert got == [
        (lines.index("    window: {at: Y, also: [Y, nope]}") + 1, "claims.1.window.also.1",
         "unknown position selection 'nope'", "define it under 'positions:'"),
        (lines.index("    extra: gone") + 1, "claims.1.extra", "unknown position selection 'gone'", known),
        (lines.index("    also_scored_by: {first: accuracy, second: acuracy}") + 1, "claims.1.also_scored_by.second",
         "unknown metric 'acuracy'", f"use one of: {', '.join(metrics.names())}"),
    ]


def test_check_claim_kind_registers_runs_and_compares(tiny_model, scratch_registry):
    def by_hand(plan) -> float:
        with torch.no_grad():
            logits = tiny_model(plan.batch.tokens)
        mask = plan.masks["late"] & (plan.batch.next_token >= 0)
        return float((logits[mask].argmax(-1) == plan.batch.next_token[mask]).double().mean())

    stanza = "window: {at: late}\nmetric: accuracy\n"
    m = check_claim_kind(WindowedClaim, stanza, tiny_model, by_hand)
    assert claim_kinds.get("windowed_test") is WindowedClaim and m.stats is not None
    with pytest.raises(AssertionError, match="differs from the reference"):
        check_claim_kind(WindowedClaim, stanza, tiny_model, lambda plan: by_hand(plan) + 0.01)
    with pytest.raises(AssertionError, match="window.at: unknown selection 'X'"):
        check_claim_kind(WindowedClaim, "window: {at: X}\nmetric: accuracy\n", tiny_model, by_hand)
    with pytest.raises(AssertionError, match="breaks the claim contract: it has no docstring"):
        check_claim_kind(NoDocstringClaim, {}, tiny_model, by_hand)


BUILT_IN_FIELDS = [
    ("kind: attention_mass\n    head: '0.0'\n    queries: Y\n    keys: nope", "claims.0.keys"),
    ("kind: independence\n    resample: {scheme: resample_tokens, positions: nope, seed: 1}\n"
     "    positions: Y\n    metric: kl", "claims.0.resample.positions"),
    ("kind: replacement\n    replace: [{component: mlp0, with: linear, fit: nope}]\n"
     "    positions: Y\n    metric: accuracy", "claims.0.replace.0.fit"),
    ("kind: path_patching\n    sender: '0.0'\n    receivers: [logits]\n    method: zero\n    sender_at: nope\n"
     "    positions: Y\n    metric: accuracy\n    effect: absolute_drop", "claims.0.sender_at"),
]


@pytest.mark.parametrize(("claim", "where"), BUILT_IN_FIELDS)
def test_every_selection_field_of_the_built_in_kinds_is_checked_at_load_time(write_yaml, claim, where):
    head = VALID_FILE.split("  - id: T8")[0]
    text = head + "  - id: T\n    statement: s\n    threshold: {at_least: 0.5}\n    " + claim + "\n"
    with pytest.raises((SpecError, SpecErrors)) as info:
        load_hypothesis(write_yaml(text))
    errors = info.value.errors if isinstance(info.value, SpecErrors) else [info.value]
    assert [(e.path, e.message) for e in errors] == [(where, "unknown position selection 'nope'")]


def test_the_built_in_kinds_type_their_references():
    """Every field of a built-in kind named like a selection or a metric is typed as one (association's
    `metric` is a set statistic, not a registered metric)."""
    selection_names = re.compile(r"^(positions|.*_at|queries|keys|at|fit)$")
    for kind, cls in claim_kinds.items():
        for name, field in cls.model_fields.items():
            if selection_names.match(name):
                assert SELECTION in field.metadata or "Reference(to='selection')" in repr(field.annotation), (
                    kind,
                    name,
                )
            if name == "metric" and kind != "association":
                assert METRIC in field.metadata, (kind, name)
            if name == "claims":
                assert "Reference(to='claim')" in repr(field.annotation), (kind, name)
    assert CLAIM.to == "claim"
