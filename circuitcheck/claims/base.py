"""Claim kinds: one file each, a spec class registered with :func:`claim_kind`.

A claim spec knows how to compile itself into a :class:`ClaimPlan` against a
concrete model and dataset. The engine runs plans; it knows no claim kind.

The keys every claim has, and the registry, live in :mod:`circuitcheck.spec.kinds`, so that
loading and validating a file needs no torch; this module adds what compiles. Claim modules
import torch inside the functions that need a model, for the same reason: ``circuitcheck
validate`` imports every claim module (tests/test_torch_free.py).
"""

from __future__ import annotations

import inspect
import re
import typing
from typing import TYPE_CHECKING, ClassVar, Literal

from circuitcheck.metrics import Metric
from circuitcheck.plan.context import CompileContext
from circuitcheck.plan.interventions import ClaimOutputs, ClaimPlan
from circuitcheck.spec.base import Threshold
from circuitcheck.spec.kinds import ClaimFields, claim_kinds
from circuitcheck.stats import per_sequence

if TYPE_CHECKING:
    import torch

__all__ = [
    "ClaimKindError",
    "ClaimSpec",
    "CompileContext",
    "claim_kind",
    "claim_kinds",
    "contract_problems",
    "sequence_sums",
]


class ClaimSpec(ClaimFields):
    """A claim kind: its keys (beyond :class:`ClaimFields`), and how it compiles against a model."""

    # The kind's reference (`circuitcheck docs KIND`, the documentation site; circuitcheck/docs_reference.py).
    # Built-in kinds set all of them (tests/test_docs_reference.py); a plug-in kind may.
    formula: ClassVar[str] = ""
    """The exact estimate, with the numerator and denominator of every ratio."""
    resamples: ClassVar[str] = ""
    """What the interval resamples (or why it is exact)."""
    example: ClassVar[str] = ""
    """One worked claim, YAML items of a ``claims:`` list, valid in docs_reference.EXAMPLE_PRELUDE's file."""
    traps: ClassVar[tuple[str, ...]] = ()
    """Known pitfalls of the kind, one sentence or two each."""

    def compile(self, ctx: CompileContext) -> ClaimPlan:
        raise NotImplementedError


class ClaimKindError(TypeError):
    """A class given to :func:`claim_kind` breaks the claim contract; the message names each rule and its fix."""


NOT_A_CLAIM_SPEC = (
    "@claim_kind registers subclasses of circuitcheck.claims.base.ClaimSpec, and this is not one",
    "declare it as `class {name}(ClaimSpec):` (from circuitcheck.claims.base import ClaimSpec)",
)
NO_KIND_TAG = (
    "its 'kind' field is {annotation}, not a tag of one value: files select the kind by it",
    'declare `kind: Literal["{suggest}"] = "{suggest}"`',
)
KIND_DEFAULT = (
    "its 'kind' is Literal[{value!r}] but defaults to {default!r}: the default is the name it registers under",
    'give the tag as its own default: `kind: Literal["{value}"] = "{value}"`',
)
NO_COMPILE = (
    "it does not define compile(self, ctx); ClaimSpec.compile only raises NotImplementedError",
    "add `def compile(self, ctx: CompileContext) -> ClaimPlan:` returning "
    "ClaimPlan(claim_id=self.id, kind=self.kind, ...)",
)
COMPILE_NOT_A_METHOD = (
    "its compile is {what}, not a plain method: the planner calls claim.compile(ctx) and uses the plan it returns",
    "define it as `def compile(self, ctx: CompileContext) -> ClaimPlan:`",
)
COMPILE_SIGNATURE = (
    "compile{signature} cannot be called as compile(ctx): the planner passes one CompileContext",
    "define it as `def compile(self, ctx: CompileContext) -> ClaimPlan:`",
)
NO_THRESHOLD = (
    "its 'threshold' field is {annotation}, not a required Threshold: every claim is judged against one",
    "remove the override; ClaimFields declares `threshold: Threshold` ({{at_least: x}}, {{at_most: x}}, "
    "{{between: [low, high]}} or {{within: m}} in a file)",
)
NO_DOCSTRING = (
    "it has no docstring: the docstring is the kind's description in `circuitcheck schema` and in editors",
    'add one under the class line saying what the claim asserts and what its estimate is, e.g. """{example}"""',
)


def _shown(annotation: object) -> str:
    if annotation is type(None):
        return "None"
    return annotation.__name__ if isinstance(annotation, type) else repr(annotation)


def _snake(name: str) -> str:
    words = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name.removesuffix("Claim") or name)
    return words.lower()


def contract_problems(cls: object) -> list[tuple[str, str]]:
    """Each ``(rule broken, fix)`` of ``cls`` against the claim contract; empty when it may register."""
    if not (isinstance(cls, type) and issubclass(cls, ClaimSpec)):
        name = getattr(cls, "__name__", "MyClaim")
        return [(NOT_A_CLAIM_SPEC[0], NOT_A_CLAIM_SPEC[1].format(name=name))]
    problems = []
    kind = cls.model_fields["kind"]
    values = typing.get_args(kind.annotation) if typing.get_origin(kind.annotation) is Literal else ()
    if len(values) != 1 or not isinstance(values[0], str):
        rule, fix = NO_KIND_TAG
        problems.append((rule.format(annotation=_shown(kind.annotation)), fix.format(suggest=_snake(cls.__name__))))
    elif kind.default != values[0]:
        rule, fix = KIND_DEFAULT
        problems.append((rule.format(value=values[0], default=kind.default), fix.format(value=values[0])))
    problems += _compile_problems(cls)
    threshold = cls.model_fields.get("threshold")
    if threshold is None or threshold.annotation is not Threshold or not threshold.is_required():
        shown = "missing" if threshold is None else _shown(threshold.annotation)
        problems.append((NO_THRESHOLD[0].format(annotation=shown), NO_THRESHOLD[1].format()))
    if not (cls.__dict__.get("__doc__") or "").strip():
        example = "Ablating `components` hurts `metric`: estimate = the drop."
        problems.append((NO_DOCSTRING[0], NO_DOCSTRING[1].format(example=example)))
    return problems


def _compile_problems(cls: type[ClaimSpec]) -> list[tuple[str, str]]:
    compile_ = inspect.getattr_static(cls, "compile")
    if compile_ is ClaimSpec.__dict__["compile"]:
        return [NO_COMPILE]
    if isinstance(compile_, (staticmethod, classmethod)) or not inspect.isfunction(compile_):
        what = type(compile_).__name__
        return [(COMPILE_NOT_A_METHOD[0].format(what=f"a {what}"), COMPILE_NOT_A_METHOD[1])]
    if inspect.iscoroutinefunction(compile_):
        return [(COMPILE_NOT_A_METHOD[0].format(what="a coroutine function"), COMPILE_NOT_A_METHOD[1])]
    signature = inspect.signature(compile_)
    try:
        signature.bind("self", "ctx")
    except TypeError:
        return [(COMPILE_SIGNATURE[0].format(signature=signature), COMPILE_SIGNATURE[1])]
    return []


def claim_kind(cls: type[ClaimSpec]) -> type[ClaimSpec]:
    """Register a claim spec class under its ``kind`` tag, once it is checked against the claim contract.

    The contract: a subclass of :class:`ClaimSpec` with a docstring, a ``kind: Literal["name"] = "name"``
    tag, a ``compile(self, ctx)`` method, and the required ``threshold`` it inherits. A class that breaks
    it is refused with :class:`ClaimKindError`, naming the class, each rule broken and its fix.
    """
    problems = contract_problems(cls)
    if problems:
        where = f"{getattr(cls, '__module__', '?')}.{getattr(cls, '__qualname__', cls)!s}"
        lines = [f"cannot register claim kind {where}:"]
        lines += [f"  {rule}\n    fix: {fix}" for rule, fix in problems]
        raise ClaimKindError("\n".join(lines))
    name = cls.model_fields["kind"].default
    cls.kind_name = name
    claim_kinds.register(name)(cls)
    return cls


def sequence_sums(out: ClaimOutputs, role: str | None, metric: Metric, mask: torch.Tensor) -> torch.Tensor:
    """Per-sequence totals of ``metric`` of run ``role`` (``None``: the clean run) at ``mask``'s positions
    (for :class:`SequenceStats`); the plan must declare the read (:func:`circuitcheck.plan.interventions.reads`)."""
    return per_sequence(out.scores(role, metric, mask), mask)
