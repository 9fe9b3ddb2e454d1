"""Names in a spec that refer to something else: a position selection, a metric, another claim.

A spec field says what its text names by its type:

    Selection     a selection defined under ``positions:`` (or ``all``)    positions: Y
    MetricName    a registered metric                                      metric: accuracy
    ClaimRef      the id of another claim in the same file                 claims: [T5a, T5b]
    CircuitRef    a circuit named under the file's ``circuits:``           circuit: induction

Each is ``str`` at run time, annotated with a :class:`Reference` marker. ``validate`` finds every
such field by walking the spec with :func:`references`, nested models, lists and optional fields
included, so a new claim kind's fields are checked without naming them anywhere else.
Components and heads are parsed values instead (:mod:`circuitcheck.spec.components`).
"""

from __future__ import annotations

import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel


@dataclass(frozen=True)
class Reference:
    """What a spec field's text names; the metadata of :data:`Selection`, :data:`MetricName`, :data:`ClaimRef`."""

    to: Literal["selection", "metric", "claim", "circuit"]


SELECTION = Reference("selection")
METRIC = Reference("metric")
CLAIM = Reference("claim")
CIRCUIT = Reference("circuit")

Selection = Annotated[str, SELECTION]
"""A spec field naming a position selection: one defined under ``positions:``, or ``all``."""
MetricName = Annotated[str, METRIC]
"""A spec field naming a registered metric (``circuitcheck.metrics``)."""
ClaimRef = Annotated[str, CLAIM]
"""A spec field naming another claim of the same file by its id."""
CircuitRef = Annotated[str, CIRCUIT]
"""A spec field naming a circuit defined under the file's ``circuits:``."""

Path = tuple[str | int, ...]


def references(model: BaseModel, path: Path = ()) -> Iterator[tuple[Path, Reference, str]]:
    """Every ``(path, reference, name)`` in ``model``, in field order; ``path`` uses the file's keys."""
    for name, field in type(model).model_fields.items():
        value = getattr(model, name)
        yield from _walk(value, field.annotation, field.metadata, path + (field.alias or name,))


def _walk(value: Any, annotation: Any, metadata: list[Any], path: Path) -> Iterator[tuple[Path, Reference, str]]:
    if value is None:
        return
    if isinstance(value, BaseModel):  # a nested model, whichever arm of a union it came from
        yield from references(value, path)
        return
    marker = next((m for m in metadata if isinstance(m, Reference)), None)
    if marker is not None:
        if isinstance(value, str):
            yield path, marker, value
        return
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Annotated:
        yield from _walk(value, args[0], list(annotation.__metadata__), path)
    elif origin in (typing.Union, types.UnionType):
        arms = [_walk(value, arm, [], path) for arm in args]
        yield from dict.fromkeys(found for arm in arms for found in arm)  # an arm per type; each name once
    elif isinstance(value, dict) and len(args) == 2:
        for key, item in value.items():
            yield from _walk(item, args[1], [], path + (key,))
    elif isinstance(value, (list, tuple)) and args:
        homogeneous = origin is not tuple or (len(args) == 2 and args[1] is Ellipsis)
        for i, item in enumerate(value):
            item_type = args[0] if homogeneous else args[i] if i < len(args) else None
            yield from _walk(item, item_type, [], path + (i,))


def references_in_data(model: type[BaseModel], data: Any, path: Path = ()) -> Iterator[tuple[Path, Reference, str]]:
    """Every ``(path, reference, name)`` in ``data`` (a file's plain data, valid or not), read by the field
    types of ``model``: what :func:`references` finds in the validated spec, found without validating.

    So ``validate`` checks names in the same pass as the schema, even in a file with schema errors: a
    value of the wrong type is skipped (the schema error covers it), and a union of models is read by the
    arm whose ``kind`` tag the data names.
    """
    if not isinstance(data, dict):
        return
    for name, field in model.model_fields.items():
        key = field.alias or name
        if key in data:
            yield from _walk_data(data[key], field.annotation, list(field.metadata), path + (key,))


TAG_KEYS = ("kind", "scheme")
"""The keys that tag a union's arms: a claim's or dataset's ``kind``, a corruption's ``scheme``."""


def tag_key(arm: Any) -> str | None:
    """Which of :data:`TAG_KEYS` a model arm of a tagged union has, if any."""
    fields = arm.model_fields if isinstance(arm, type) and issubclass(arm, BaseModel) else {}
    return next((k for k in TAG_KEYS if k in fields), None)


def _kind_tag(arm: Any) -> str | None:
    """The tag of a model arm of a tagged union (``kind: Literal["ablation"]``, ``scheme: Literal["refill"]``)."""
    key = tag_key(arm)
    values = typing.get_args(arm.model_fields[key].annotation) if key is not None else ()
    return values[0] if len(values) == 1 and isinstance(values[0], str) else None


def inline_selections(model: type[BaseModel], data: Any, path: Path = ()) -> Iterator[tuple[Path, dict[str, Any]]]:
    """Every ``(path, mapping)`` in ``data`` where a :data:`Selection` field holds a selection written inline
    (``keys: {role: C}``) instead of a name, read by the field types of ``model`` as
    :func:`references_in_data` reads names. A mapping that another arm of the field's type takes (an
    ``{offset: -1}`` where the field also accepts a relative key) is that arm's, not a selection."""
    if not isinstance(data, dict):
        return
    for name, field in model.model_fields.items():
        key = field.alias or name
        if key in data:
            found = _walk_data(data[key], field.annotation, list(field.metadata), path + (key,), inline=True)
            yield from ((at, value) for at, _, value in found)


def _claimed_by_a_model_arm(value: Any, args: tuple[Any, ...]) -> bool:
    """A mapping whose keys belong to a model arm of a union: it is that arm's value, not an inline selection."""
    if not isinstance(value, dict):
        return False
    return any(
        isinstance(arm, type) and issubclass(arm, BaseModel) and set(value) & set(arm.model_fields) for arm in args
    )


def _walk_data(
    value: Any, annotation: Any, metadata: list[Any], path: Path, *, inline: bool = False
) -> Iterator[tuple[Path, Reference, Any]]:
    if value is None:
        return
    marker = next((m for m in metadata if isinstance(m, Reference)), None)
    if marker is not None:
        if not inline and isinstance(value, str):
            yield path, marker, value
        elif inline and marker == SELECTION and isinstance(value, dict):
            yield path, marker, value
        return
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        if inline:
            yield from ((at, SELECTION, v) for at, v in inline_selections(annotation, value, path))
        else:
            yield from references_in_data(annotation, value, path)
        return
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Annotated:
        yield from _walk_data(value, args[0], list(annotation.__metadata__), path, inline=inline)
    elif origin in (typing.Union, types.UnionType):
        arms = [typing.get_args(a)[0] if typing.get_origin(a) is Annotated else a for a in args]
        tagged = [a for a in arms if _kind_tag(a) is not None]
        if tagged and isinstance(value, dict):  # a tagged union: the data's kind (or scheme) picks the arm, or none
            args = tuple(a for a in tagged if _kind_tag(a) == value.get(str(tag_key(a))))
        elif inline and _claimed_by_a_model_arm(value, args):
            return
        found = [list(_walk_data(value, arm, [], path, inline=inline)) for arm in args]
        seen: set[Any] = set()
        for item in (item for arm in found for item in arm):  # an arm per type; each name (or place) once
            key = item[0] if inline else item
            if key not in seen:
                seen.add(key)
                yield item
    elif isinstance(value, dict) and origin is dict and len(args) == 2:
        for key, item in value.items():
            yield from _walk_data(item, args[1], [], path + (key,), inline=inline)
    elif isinstance(value, list) and args and origin in (list, tuple):
        homogeneous = origin is list or (len(args) == 2 and args[1] is Ellipsis)
        for i, item in enumerate(value):
            item_type = args[0] if homogeneous else args[i] if i < len(args) else None
            yield from _walk_data(item, item_type, [], path + (i,), inline=inline)
