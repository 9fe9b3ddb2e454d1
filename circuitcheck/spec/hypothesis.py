"""The hypothesis file: model, dataset, named positions and claims; loaded strictly."""

from __future__ import annotations

import copy
import difflib
import functools
import re
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, Field, ValidationError, create_model

from circuitcheck.errors import MAX_SHOWN_ERRORS, SpecError, SpecErrors
from circuitcheck.metrics import metrics
from circuitcheck.plugins import load_extensions
from circuitcheck.spec.base import RULE_ERROR, Controls, PositionSelection, Statistics, Strict
from circuitcheck.spec.circuits import CircuitName, CircuitSpec, circuit_errors
from circuitcheck.spec.components import SYNTAX_ERROR
from circuitcheck.spec.kinds import claim_kinds, dataset_kinds
from circuitcheck.spec.messages import Names, did_you_mean, explain, known, shown_value, spelt, written_inline
from circuitcheck.spec.references import (
    CIRCUIT,
    CLAIM,
    METRIC,
    SELECTION,
    inline_selections,
    references_in_data,
)
from circuitcheck.spec.vacuity import vacuity_errors
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
    controls: Controls | None = Field(
        default=None,
        description="Controls run with every claim: 'null_model: {n, seed}' re-runs them on re-initialised copies",
    )
    circuits: dict[CircuitName, CircuitSpec] = Field(
        default_factory=dict,
        description="Named circuits: edges 'sender -> receiver' (or the 'nodes:' shorthand) that claims refer to",
    )


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


def _misspelt(errors: list[Any], data: Any) -> dict[tuple[str | int, ...], dict[str, str]]:
    """Per mapping, the unknown keys (as the file spells them) that are close to a missing required key."""
    unknown: dict[tuple[str | int, ...], list[str]] = {}
    for err in errors:
        if err["type"] == "extra_forbidden":
            path = _data_path(data, err["loc"])
            unknown.setdefault(path[:-1], []).append(str(path[-1]))
    close: dict[tuple[str | int, ...], dict[str, str]] = {}
    for err in errors:
        if err["type"] == "missing":
            parent = _data_path(data, err["loc"][:-1])
            guess = difflib.get_close_matches(str(err["loc"][-1]), unknown.get(parent, []), n=1)
            if guess:
                close.setdefault(parent, {})[str(err["loc"][-1])] = guess[0]
    return close


def hoist_inline_selections(data: dict[str, Any], smap: SourceMap) -> dict[str, Any]:
    """``data`` with every selection written inline (``keys: {role: [B, C]}``) moved under ``positions:``,
    named by its text, and the field given that name; so every later stage sees names only. ``smap``
    learns where each one is written (:attr:`SourceMap.aliases`), so its errors point there."""
    found = list(inline_selections(hypothesis_model(), data))
    positions = data.get("positions", {})
    if not found or not isinstance(positions, dict):
        return data
    hoisted = copy.deepcopy(data)
    named = dict(positions)
    for path, value in found:
        name = written_inline(value)
        while name in named and named[name] != value:  # a selection named like this text already: another name
            name += "'"
        if name not in named:
            named[name] = value
            smap.aliases[("positions", name)] = path
        node: Any = hoisted
        for part in path[:-1]:
            node = node[part]
        node[path[-1]] = name
    hoisted["positions"] = named
    return hoisted


def _validation_errors(exc: ValidationError, data: Any, smap: SourceMap) -> list[SpecError]:
    errors = []
    names = Names.of(data)
    found = exc.errors()[:MAX_SHOWN_ERRORS]
    where_written = [err | {"loc": smap.written(tuple(err["loc"]))} for err in found]  # inline selections
    misspelt = _misspelt(where_written, data)
    for err, written in zip(found, where_written, strict=True):
        path = _data_path(data, written["loc"])
        message, fix = explain(err, path, hypothesis_model(), smap, names, _known_keys(), _PATTERN_HELP)
        if err["type"] == "union_tag_invalid" and isinstance(_at(data, path), dict) and "kind" in _at(data, path):
            path += ("kind",)
        if err["type"] == "missing" and str(err["loc"][-1]) in misspelt.get(path, {}):
            typo = misspelt[path][str(err["loc"][-1])]
            line = smap.locate(path + (typo,), key=True).line
            fix = f"rename {typo!r} (line {line}) to {err['loc'][-1]!r}"
        where = smap.locate(path, key=err["type"] == "extra_forbidden")
        got = err.get("input")
        quiet = ("missing", "extra_forbidden", "union_tag_invalid", "union_tag_not_found", SYNTAX_ERROR, RULE_ERROR)
        shows_value = err["type"] not in quiet
        if err["type"] == "missing" and isinstance(err["loc"][-1], int):  # too few values in a pair: show them
            shows_value, got = True, _at(data, path)
        if shows_value:
            message += f", got {shown_value(got)}"
        if isinstance(got, bool) and path in smap.booleans:
            fix = spelt(path, got, smap)
        errors.append(SpecError(where, ".".join(map(str, path)), message, fix))
    return _one_arm(errors, found)


def _one_arm(errors: list[SpecError], found: list[Any]) -> list[SpecError]:
    """Drop the text arm's "expected text" of a field that also takes a mapping (``keys: Selection |
    RelativeKey``) where the mapping's own errors say what is wrong inside it."""
    def other_arm(e: SpecError, err: Any) -> bool:
        if err["type"] != "string_type" or not isinstance(err.get("input"), dict):
            return False
        return any(o is not e and (o.path == e.path or o.path.startswith(e.path + ".")) for o in errors)

    return [e for e, err in zip(errors, found, strict=True) if not other_arm(e, err)]


SELECTION_FIX = "define it under 'positions:'"


def _reference_errors(data: dict[str, Any], smap: SourceMap) -> list[SpecError]:
    """Names that must resolve within the file: every field typed Selection, MetricName, ClaimRef or CircuitRef,
    read from the file's data (so a file with schema errors is checked too), and claim ids used twice."""
    errors = []
    names = Names.of(data)
    raw = data.get("claims")
    raw_claims: list[Any] = raw if isinstance(raw, list) else []
    first_use: dict[str, int] = {}
    for i, claim in enumerate(raw_claims):
        cid = claim.get("id") if isinstance(claim, dict) else None
        if not isinstance(cid, str):
            continue
        if cid in first_use:
            line = smap.locate(("claims", first_use[cid], "id")).line
            errors.append(SpecError(
                smap.locate(("claims", i, "id")), f"claims.{i}.id",
                f"claim id {cid!r} is used twice; ids must be unique",
                f"rename one of them (the first is on line {line})",
            ))
        else:
            first_use[cid] = i
    for path, ref, name in references_in_data(hypothesis_model(), data):
        where, dotted = smap.locate(path), ".".join(map(str, path))
        if ref == SELECTION and names.selections is not None and name not in names.selections:
            # a claim's own field lists the known selections; a nested one (corruption.positions) does not
            fix = did_you_mean(name, names.selections) + SELECTION_FIX + (
                f" (known: {known(names.selections)})" if len(path) == 3 else ""
            )
            errors.append(SpecError(where, dotted, f"unknown position selection {name!r}", fix))
        elif ref == METRIC and name not in metrics:
            errors.append(
                SpecError(where, dotted, f"unknown metric {name!r}", f"use one of: {', '.join(metrics.names())}")
            )
        elif ref == CIRCUIT and names.circuits is not None and name not in names.circuits:
            errors.append(SpecError(
                where, dotted, f"unknown circuit {name!r}",
                did_you_mean(name, names.circuits) + f"define it under 'circuits:' (known: {known(names.circuits)})",
            ))
        elif ref == CLAIM and names.claims is not None:
            owner = raw_claims[path[1]] if path[0] == "claims" and isinstance(path[1], int) else None
            problem = (
                f"unknown claim id {name!r}" if name not in names.claims
                else "a claim cannot order itself" if owner is not None and name == owner.get("id")
                else f"{name!r} is itself an ordering claim"
                if owner is not None and names.claims[name] == owner.get("kind")
                else None
            )
            if problem:
                fix = f"use ids of other claims in this file: {known(names.claims)}"
                errors.append(SpecError(where, dotted, problem, fix))
    return errors


def _circuits(spec: Any, data: dict[str, Any]) -> dict[str, CircuitSpec]:
    """The file's circuits: the validated spec's, or, in a file with schema errors, each one that validates alone
    (the others' errors are reported already)."""
    if spec is not None:
        return dict(spec.circuits)
    raw = data.get("circuits")
    found = {}
    for name, circuit in (raw.items() if isinstance(raw, dict) else ()):
        try:
            found[name] = CircuitSpec.model_validate(circuit)
        except ValidationError:
            continue
    return found


def load_hypothesis(path: Path) -> tuple[Any, SourceMap]:
    """Read, parse and validate a hypothesis file; raise SpecErrors listing every problem."""
    data, smap = read_yaml(path)
    return validate_hypothesis(data, smap), smap


def validate_hypothesis(data: Any, smap: SourceMap) -> Any:
    """Validate parsed hypothesis data (a file's, or a mapping built in Python, with an empty ``smap``).

    Every problem is found in one pass: schema errors, names that do not resolve, duplicate claim ids and
    circuit errors together, listed in file order."""
    if not isinstance(data, dict):
        raise SpecError(
            smap.locate(()),
            "",
            "a hypothesis file must be a mapping with model, dataset, claims",
            "see hypotheses/trigram.yaml",
        )
    spec, errors, omitted = None, [], 0
    try:
        spec = hypothesis_model().model_validate(hoist_inline_selections(data, smap))
    except ValidationError as exc:
        errors = _validation_errors(exc, data, smap)
        omitted = max(0, exc.error_count() - MAX_SHOWN_ERRORS)  # those not read (a dropped union arm is not one)
    reported = {e.path for e in errors}
    errors += [e for e in _reference_errors(data, smap) if e.path not in reported]
    errors += circuit_errors(_circuits(spec, data), smap)
    if errors:
        errors.sort(key=lambda e: (e.where.line, e.where.col))  # in file order, as a compiler lists them
        raise SpecErrors(errors, omitted=omitted)
    vacuous = vacuity_errors(spec, smap)  # claims that cannot fail: circuitcheck.spec.vacuity
    if vacuous:
        raise SpecErrors(vacuous)
    return spec
