"""The hypothesis file: model, dataset, named positions and claims; loaded strictly."""

from __future__ import annotations

import difflib
import functools
import re
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, Field, ValidationError, create_model, model_validator

from circuitcheck.errors import MAX_SHOWN_ERRORS, SpecError, SpecErrors
from circuitcheck.metrics import metrics
from circuitcheck.plugins import load_extensions
from circuitcheck.spec.base import PositionSelection, Statistics, Strict
from circuitcheck.spec.circuits import CircuitName, CircuitSpec, circuit_errors
from circuitcheck.spec.components import SYNTAX_ERROR
from circuitcheck.spec.kinds import claim_kinds, dataset_kinds
from circuitcheck.spec.references import CIRCUIT, CLAIM, METRIC, SELECTION, references
from circuitcheck.spec.yaml_source import SourceMap, read_yaml

REPORT_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$"
"""A report name is one file name: no separators, no leading dot, no control characters, at most 100 characters."""
_REPORT_NAME = re.compile(REPORT_NAME.removesuffix("$") + r"\Z")


class HypothesisBase(Strict):
    version: Literal[1] = Field(description="File format version")
    name: str | None = Field(
        default=None, pattern=REPORT_NAME,
        description="Report name: reports are written as <name>.md, .json, .html; defaults to the file name",
    )
    model: str = Field(description="Zoo model name, or a directory holding card.json")
    variants: list[str] | None = Field(
        default=None, min_length=2,
        description="Models `circuitcheck compare FILE` runs the claims on, the first as reference; `run` ignores it",
    )
    positions: dict[str, PositionSelection] = Field(default_factory=dict)
    statistics: Statistics = Field(default_factory=Statistics)
    circuits: dict[CircuitName, CircuitSpec] = Field(
        default_factory=dict,
        description="Named circuits: edges 'sender -> receiver' (or the 'nodes:' shorthand) that claims refer to",
    )

    @model_validator(mode="after")
    def _cross_references(self) -> Any:
        claims = getattr(self, "claims", [])
        seen: set[str] = set()
        for claim in claims:
            if claim.id in seen:
                raise ValueError(f"claim id {claim.id!r} is used twice; ids must be unique")
            seen.add(claim.id)
        return self


def report_stem(spec: HypothesisBase, path: Path) -> str:
    """The file name (without suffix) of the reports for ``spec``, read from ``path``.

    ``name`` is checked when the file loads; the default, the file's own stem, is
    made safe the same way: runs of other characters become '-', and a stem that
    is still unusable (``.yaml``, a stem of dots) becomes ``hypothesis``.
    """
    return spec.name if spec.name is not None else safe_report_name(path.stem)


def safe_report_name(text: str) -> str:
    """``text`` made into a valid report name: runs of other characters become '-', leading '._-' go."""
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", text).lstrip("._-")[:100]
    return stem if _REPORT_NAME.match(stem) else "hypothesis"


def _tagged_union(kinds: list[type]) -> Any:
    if len(kinds) == 1:
        return kinds[0]
    return Annotated[Union[tuple(kinds)], Field(discriminator="kind")]  # noqa: UP007


@functools.cache
def hypothesis_model() -> type[HypothesisBase]:
    """The file model, with a tagged union over every registered claim and dataset kind."""
    load_extensions()
    claims = _tagged_union([cls for _, cls in claim_kinds.items()])
    datasets = _tagged_union([cls for _, cls in dataset_kinds.items()])
    model: type[HypothesisBase] = create_model(
        "HypothesisFile",
        __base__=HypothesisBase,
        dataset=(datasets, Field(description="Where the tokens come from")),
        claims=(list[claims], Field(min_length=1)),  # type: ignore[valid-type]
    )
    return model


def _data_path(data: Any, loc: tuple[Any, ...]) -> tuple[str | int, ...]:
    """The part of a pydantic ``loc`` that exists in the data (drops union tags)."""
    path: list[str | int] = []
    node = data
    for part in loc:
        if isinstance(node, dict) and part in node:
            node = node[part]
            path.append(part)
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
            path.append(part)
    return tuple(path)


@functools.cache
def _known_keys() -> frozenset[str]:
    """Every key any part of the file format accepts (for did-you-mean hints)."""
    keys: set[str] = set()
    todo: list[Any] = [hypothesis_model()]
    seen: set[Any] = set()
    while todo:
        cls = todo.pop()
        if cls in seen or not (isinstance(cls, type) and issubclass(cls, BaseModel)):
            continue
        seen.add(cls)
        for name, field in cls.model_fields.items():
            keys.add(field.alias or name)
            todo.extend(_model_types(field.annotation))
    return frozenset(keys)


def _model_types(annotation: Any) -> list[Any]:
    args = getattr(annotation, "__args__", ()) or ()
    meta = getattr(annotation, "__metadata__", None)
    origin = getattr(annotation, "__origin__", None)
    found = [annotation] if isinstance(annotation, type) else []
    if meta is not None and origin is not None:
        found += _model_types(origin)
    for arg in args:
        found += _model_types(arg)
    return found


def _at(data: Any, path: tuple[str | int, ...]) -> Any:
    for part in path:
        data = data[part]
    return data


_PATTERN_HELP = {
    REPORT_NAME: (
        "a report name must be one file name of at most 100 characters: a letter or digit, "
        "then letters, digits, '-', '_' or '.'",
        "use letters, digits, '-', '_' and '.', e.g. 'trigram'",
    ),
}
_NOT_FINITE_FIX = "write a finite number: a bound of .nan or .inf cannot be passed or failed meaningfully"


def _message(err: Any) -> tuple[str, str | None]:
    kind, loc = err["type"], err["loc"]
    if kind == "string_pattern_mismatch" and err["ctx"]["pattern"] in _PATTERN_HELP:
        return _PATTERN_HELP[err["ctx"]["pattern"]]
    if kind == "finite_number":
        return "expected a finite number", _NOT_FINITE_FIX
    if kind == "extra_forbidden":
        guess = difflib.get_close_matches(str(loc[-1]), sorted(_known_keys()), n=1)
        fix = f"did you mean {guess[0]!r}?" if guess else "remove it; `circuitcheck schema` lists the allowed keys"
        return f"unknown key {loc[-1]!r}", fix
    if kind == "missing":
        return f"missing required key {loc[-1]!r}", f"add '{loc[-1]}: ...'"
    if kind == "union_tag_invalid":
        return err["msg"], "set 'kind' to one of the listed values"
    if kind == "literal_error":
        return err["msg"].replace("Input should be", "expected"), None
    if kind == SYNTAX_ERROR:  # the message shows the value already
        return err["ctx"]["message"], err["ctx"]["fix"] or None
    msg = err["msg"].removeprefix("Value error, ")
    return msg, None


def _shown(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def _validation_errors(exc: ValidationError, data: Any, smap: SourceMap) -> list[SpecError]:
    errors = []
    for err in exc.errors()[:MAX_SHOWN_ERRORS]:
        path = _data_path(data, err["loc"])
        message, fix = _message(err)
        if err["type"] == "union_tag_invalid" and isinstance(_at(data, path), dict) and "kind" in _at(data, path):
            path += ("kind",)
        where = smap.locate(path, key=err["type"] == "extra_forbidden")
        got = err.get("input")
        shows_value = err["type"] not in ("missing", "extra_forbidden", "union_tag_invalid", SYNTAX_ERROR)
        if shows_value and not isinstance(got, (dict, list)):
            message += f", got {_shown(got)}"
        if isinstance(got, bool) and path in smap.booleans:
            text = smap.booleans[path]
            fix = f"YAML reads unquoted {text} as the boolean {str(got).lower()}; quote it: '{text}'"
        errors.append(SpecError(where, ".".join(map(str, path)), message, fix))
    return errors


SELECTION_FIX = "define it under 'positions:'"


def _reference_errors(spec: Any, smap: SourceMap) -> list[SpecError]:
    """Names that must resolve within the file: every field typed Selection, MetricName, ClaimRef or CircuitRef."""
    errors = []
    known = set(spec.positions) | {"all"}
    kinds = {c.id: c.kind for c in spec.claims}
    for path, ref, name in references(spec):
        where, dotted = smap.locate(path), ".".join(map(str, path))
        if ref == SELECTION and name not in known:
            # a claim's own field lists the known selections; a nested one (corruption.positions) does not
            fix = SELECTION_FIX + (f" (known: {', '.join(sorted(known))})" if len(path) == 3 else "")
            errors.append(SpecError(where, dotted, f"unknown position selection {name!r}", fix))
        elif ref == METRIC and name not in metrics:
            errors.append(
                SpecError(where, dotted, f"unknown metric {name!r}", f"use one of: {', '.join(metrics.names())}")
            )
        elif ref == CIRCUIT and name not in spec.circuits:
            known_circuits = ", ".join(sorted(spec.circuits)) or "none yet"
            errors.append(SpecError(
                where, dotted, f"unknown circuit {name!r}", f"define it under 'circuits:' (known: {known_circuits})"
            ))
        elif ref == CLAIM:
            owner = spec.claims[path[1]] if path[0] == "claims" else None
            problem = (
                f"unknown claim id {name!r}" if name not in kinds
                else "a claim cannot order itself" if owner is not None and name == owner.id
                else f"{name!r} is itself an ordering claim" if owner is not None and kinds[name] == owner.kind
                else None
            )
            if problem:
                fix = f"use ids of other claims in this file: {', '.join(sorted(kinds))}"
                errors.append(SpecError(where, dotted, problem, fix))
    return sorted(errors, key=lambda e: (e.where.line, e.where.col))  # in file order, as a compiler lists them


def load_hypothesis(path: Path) -> tuple[Any, SourceMap]:
    """Read, parse and validate a hypothesis file; raise SpecErrors listing every problem."""
    data, smap = read_yaml(path)
    return validate_hypothesis(data, smap), smap


def validate_hypothesis(data: Any, smap: SourceMap) -> Any:
    """Validate parsed hypothesis data (a file's, or a mapping built in Python, with an empty ``smap``)."""
    if not isinstance(data, dict):
        raise SpecError(
            smap.locate(()),
            "",
            "a hypothesis file must be a mapping with model, dataset, claims",
            "see hypotheses/trigram.yaml",
        )
    try:
        spec = hypothesis_model().model_validate(data)
    except ValidationError as exc:
        errors = _validation_errors(exc, data, smap)
        raise SpecErrors(errors, omitted=exc.error_count() - len(errors)) from None
    errors = _reference_errors(spec, smap) + circuit_errors(spec.circuits, smap)
    if errors:
        raise SpecErrors(errors)
    return spec
