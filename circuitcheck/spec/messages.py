"""What the loader says about a schema error: a message in the file's terms, and a fix a newcomer can act on.

pydantic says "Input should be a valid string"; a hypothesis file's author needs "quote it: '0.0' (YAML
reads 0.0 as a number)", or "write the name of a selection under 'positions:' (known: ...)". The fix
depends on what the field holds (found from the error's ``loc`` by :func:`field_at`: a selection, a
metric, a head, a threshold), on the value given, and on how the file spelt it (the source map keeps the
text of unquoted numbers and booleans).
"""

from __future__ import annotations

import difflib
import math
import types
import typing
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel

from circuitcheck.metrics import metrics
from circuitcheck.spec.base import RULE_ERROR
from circuitcheck.spec.components import COMPONENT_FIX, RECEIVER_FIX, SYNTAX_ERROR, Head, HeadInput
from circuitcheck.spec.references import CIRCUIT, CLAIM, METRIC, SELECTION, Reference, tag_key
from circuitcheck.spec.yaml_source import SourceMap

Path_ = tuple[str | int, ...]

ID_PATTERN = r"^[A-Za-z][A-Za-z0-9_.-]*$"
"""The rule for claim ids and circuit names (:data:`circuitcheck.spec.base.ClaimId`, ``CIRCUIT_NAME``)."""
ID_FIX = "ids start with a letter; use letters, digits, '_', '.', '-'"
NAME_FIX = "names start with a letter; use letters, digits, '_', '.', '-'"
NOT_FINITE_FIX = "write a finite number: a bound of .nan or .inf cannot be passed or failed meaningfully"
NULL_FIX = "write a value after the key: an empty value (or ~, null) is YAML's null"
QUOTE_NUMBER_FIX = "quote it: '{text}' (YAML reads {text} as a number)"
QUOTE_BOOLEAN_FIX = "YAML reads unquoted {text} as the boolean {value}; quote it: '{text}'"
TEXT_FIX = "write one value in quotes here, not a {shape}"
WHOLE_NUMBER_FIX = "write a whole number, like 50, without quotes"
FRACTION_FIX = "drop the fractional part: {value}"
NUMBER_FIX = "write a number, like 0.5, without quotes"
PERCENT_FIX = "write {text} as the fraction {value:g}"
BOOLEAN_FIX = "write true or false"
LIST_OF_ONE_FIX = "put it in brackets: [{text}]"
LIST_FIX = "write a list: [a, b], or one '- item' per line"
PAIR_FIX = "write {count} values in brackets, e.g. [{example}]"
MAPPING_FIX = "write a mapping ('key: value' lines, or {{key: value}}) with keys from: {keys}"
SOME_TEXT_FIX = "write some text"


@dataclass(frozen=True)
class Names:
    """What the file defines that other fields may name; None where that part of the file is unreadable."""

    selections: dict[str, Any] | None
    claims: dict[str, Any] | None
    circuits: set[str] | None

    @classmethod
    def of(cls, data: dict[str, Any]) -> Names:
        positions = data.get("positions", {})
        circuits = data.get("circuits", {})
        raw_claims = data.get("claims")
        claims = None
        if isinstance(raw_claims, list):
            claims = {
                c["id"]: c.get("kind") for c in raw_claims if isinstance(c, dict) and isinstance(c.get("id"), str)
            }
        return cls(
            dict(positions) | {"all": {"all": True}} if isinstance(positions, dict) else None,
            claims,
            set(circuits) if isinstance(circuits, dict) else None,
        )


def known(names: Any) -> str:
    return ", ".join(sorted(names)) or "none yet"


def _unwrap(annotation: Any, metadata: list[Any]) -> tuple[Any, list[Any]]:
    """Strip ``Annotated`` (keeping its metadata) and ``| None``."""
    while True:
        origin, args = typing.get_origin(annotation), typing.get_args(annotation)
        if origin is Annotated:
            annotation, metadata = args[0], metadata + list(annotation.__metadata__)
        elif origin in (typing.Union, types.UnionType) and type(None) in args and len(args) == 2:
            annotation = next(a for a in args if a is not type(None))
        else:
            return annotation, metadata


def _kind_tag(arm: Any) -> str | None:
    arm, _ = _unwrap(arm, [])
    key = tag_key(arm)
    kind = arm.model_fields[key] if key is not None else None
    values = typing.get_args(kind.annotation) if kind is not None else ()
    return values[0] if len(values) == 1 and isinstance(values[0], str) else None


def field_at(model: type[BaseModel], loc: tuple[Any, ...]) -> tuple[Any, list[Any]]:
    """The annotation and metadata of what a pydantic error's ``loc`` points at; ``(None, [])`` if unknown.

    A tagged union's arm is the part of ``loc`` that names its ``kind`` (``claims.0.ablation.method``)."""
    annotation: Any = model
    metadata: list[Any] = []
    for part in loc:
        annotation, metadata = _unwrap(annotation, metadata)
        origin, args = typing.get_origin(annotation), typing.get_args(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            fields = annotation.model_fields
            found = next((f for n, f in fields.items() if part in (n, f.alias)), None)
            if found is None:
                return None, []
            annotation, metadata = found.annotation, list(found.metadata)
        elif origin in (typing.Union, types.UnionType):
            arm = next((a for a in args if _kind_tag(a) == part), None)
            if arm is None:
                return None, []
            annotation, metadata = arm, []
        elif origin is list and isinstance(part, int):
            annotation, metadata = args[0], []
        elif origin is tuple and isinstance(part, int):
            homogeneous = len(args) == 2 and args[1] is Ellipsis
            annotation = args[0] if homogeneous else args[part] if part < len(args) else None
            metadata = []
        elif origin is dict and len(args) == 2:
            annotation, metadata = args[1], []
        else:
            return None, []
    return _unwrap(annotation, metadata)


def shown_value(value: Any, limit: int = 60) -> str:
    """A value as an error message shows it: a short mapping or list inline as the file writes it."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, (dict, list)):
        inline = _inline(value)
        return inline if len(inline) <= limit else f"a {_shape(value)} of {len(value)} entries"
    text = repr(value)
    return text if len(text) <= limit + 20 else f"{text[:limit + 20]}... ({len(text)} characters)"


def _shape(value: Any) -> str:
    return "mapping" if isinstance(value, dict) else "list" if isinstance(value, list) else "value"


def _inline(value: Any) -> str:
    """A mapping or list as a file would write it inline: ``{role: C}``, ``[1, 2]``."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_inline(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_inline(v) for v in value) + "]"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def written_inline(value: Any) -> str:
    """A mapping or list as a file would write it inline (``{role: [B, C]}``): the name of an inline selection."""
    return _inline(value)


def _reference_fix(ref: Reference, got: Any, names: Names) -> tuple[str, str]:
    """(what was expected, fix) for a field that names something defined elsewhere."""
    if ref == SELECTION:
        selections = names.selections or {}
        same = next((n for n, sel in selections.items() if isinstance(got, dict) and sel == got and n != "all"), None)
        if same is not None:
            fix = f"write {same!r}, the selection under 'positions:' defined as {_inline(got)}"
        elif isinstance(got, dict):
            fix = (
                f"add it under 'positions:' with a name (e.g. 'mine: {_inline(got)}') and write the name here "
                f"(known: {known(selections)})"
            )
        else:
            fix = f"write the name of a selection under 'positions:' (known: {known(selections)})"
        return "expected the name of a selection under 'positions:'", fix
    if ref == METRIC:
        return "expected the name of a metric", f"use one of: {', '.join(metrics.names())}"
    if ref == CLAIM:
        return "expected the id of another claim", f"use ids of other claims in this file: {known(names.claims or {})}"
    assert ref == CIRCUIT, ref
    circuits = known(names.circuits or {})
    return "expected the name of a circuit under 'circuits:'", f"use a circuit under 'circuits:' (known: {circuits})"


def _text_expected(annotation: Any, metadata: list[Any], got: Any, names: Names) -> tuple[str, str]:
    """(what was expected, fix) for a value that should have been text."""
    ref = next((m for m in metadata if isinstance(m, Reference)), None)
    if ref is not None:
        return _reference_fix(ref, got, names)
    arms = typing.get_args(annotation)
    if annotation is Head:
        return "expected a head as 'L.H'", "write one head in quotes, e.g. '1.0'"
    if HeadInput in arms:
        return "expected a receiver", RECEIVER_FIX
    if Head in arms:
        return "expected a component name", COMPONENT_FIX
    return "expected text", TEXT_FIX.format(shape=_shape(got))


def _example_pair(annotation: Any) -> tuple[int, str]:
    args = typing.get_args(annotation)
    if args and all(a is int for a in args):
        return len(args), ", ".join(str(i) for i in (1, 49, 50, 51)[: len(args)])
    return len(args) or 2, ", ".join(f"{x:g}" for x in (0.4, 0.6, 0.8, 1.0)[: len(args) or 2])


def _model_fix(annotation: Any, number: str | None) -> str:
    """The keys a mapping takes; given a bare number, the first numeric key with it as an example."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        fields = annotation.model_fields
        fix = MAPPING_FIX.format(keys=", ".join(f.alias or n for n, f in fields.items()))
        numeric = next((f.alias or n for n, f in fields.items() if _unwrap(f.annotation, [])[0] is float), None)
        return fix + (f", e.g. {{{numeric}: {number}}}" if number is not None and numeric is not None else "")
    return "write a mapping: 'key: value' lines, or {key: value}"


def _list_fix(annotation: Any, path: Path_, got: Any, smap: SourceMap) -> str:
    """Put one value in brackets (quoted where the list holds text, as a component list does)."""
    items = typing.get_args(annotation)
    numeric = bool(items) and _unwrap(items[0], [])[0] in (int, float)
    if path in smap.numbers:
        text = smap.numbers[path]
        return LIST_OF_ONE_FIX.format(text=text if numeric else f"'{text}'")
    if isinstance(got, str):
        return LIST_OF_ONE_FIX.format(text=got)
    return LIST_FIX


def _percent(got: Any) -> float | None:
    if isinstance(got, str) and got.strip().endswith("%"):
        try:
            value = float(got.strip()[:-1]) / 100.0
        except ValueError:
            return None
        return value if math.isfinite(value) else None
    return None


def spelt(path: Path_, got: Any, smap: SourceMap) -> str | None:
    """The fix for a scalar the file wrote unquoted and YAML read as a number or a boolean."""
    if isinstance(got, bool) and path in smap.booleans:
        return QUOTE_BOOLEAN_FIX.format(text=smap.booleans[path], value=str(got).lower())
    if isinstance(got, (int, float)) and path in smap.numbers:
        return QUOTE_NUMBER_FIX.format(text=smap.numbers[path])
    return None


def _type_error(kind: str, err: Any, path: Path_, field: tuple[Any, list[Any]], smap: SourceMap,
                names: Names) -> tuple[str, str | None] | None:
    """(message, fix) for a value of the wrong type or size; None for other errors."""
    annotation, metadata = field
    got, ctx = err.get("input"), err.get("ctx") or {}
    if kind == "string_type":
        expected, fix = _text_expected(annotation, metadata, got, names)
        if got is None:
            return expected, NULL_FIX
        return expected, spelt(path, got, smap) or fix
    if kind in ("int_type", "int_parsing"):
        return "expected an integer (a whole number)", NULL_FIX if got is None else WHOLE_NUMBER_FIX
    if kind == "int_from_float":
        whole = math.trunc(got) if isinstance(got, float) and math.isfinite(got) else 0
        return "expected an integer (a whole number)", FRACTION_FIX.format(value=whole)
    if kind in ("float_type", "float_parsing"):
        percent = _percent(got)
        fix = PERCENT_FIX.format(text=got, value=percent) if percent is not None else NUMBER_FIX
        return "expected a number", NULL_FIX if got is None else fix
    if kind in ("bool_type", "bool_parsing"):
        return "expected true or false", BOOLEAN_FIX
    if kind == "list_type":
        return "expected a list", _list_fix(annotation, path, got, smap)
    if kind == "tuple_type" or (kind in ("too_short", "too_long") and typing.get_origin(annotation) is tuple):
        count, example = _example_pair(annotation)
        return f"expected a list of {count} values", PAIR_FIX.format(count=count, example=example)
    if kind == "too_short":
        return err["msg"], f"give at least {ctx.get('min_length', 1)} item(s)"
    if kind == "too_long":
        return err["msg"], f"give at most {ctx.get('max_length')} item(s)"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return "expected a mapping", _model_fix(annotation, smap.numbers.get(path))
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        op = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}[kind]
        limit = next(iter(ctx.values()), None)
        return err["msg"], f"use a value {op} {limit}"
    if kind == "string_too_short":
        return err["msg"], SOME_TEXT_FIX
    if kind == "string_too_long":
        return err["msg"], f"shorten it to at most {ctx.get('max_length')} characters"
    return None


def _id_message(got: Any, what: str) -> tuple[str, str]:
    """The broken rule of an id (or circuit name), and the rule as a fix, rather than the regular expression."""
    text = str(got)
    article = "an" if what == "id" else "a"
    if not text[:1].isascii() or not text[:1].isalpha():
        message = f"{article} {what} must start with a letter"
    else:
        bad = next(ch for ch in text if not (ch.isascii() and (ch.isalnum() or ch in "_.-")))
        message = f"{article} {what} cannot hold {bad!r}"
    return message, ID_FIX if what == "id" else NAME_FIX


def did_you_mean(name: str, choices: Any) -> str:
    """``"did you mean 'all'? "`` when ``name`` is close to one of ``choices``, else ``""``."""
    guess = difflib.get_close_matches(name, sorted(choices), n=1)
    return f"did you mean {guess[0]!r}? " if guess else ""


def literal_fix(err: Any, annotation: Any) -> str | None:
    """A did-you-mean for a value close to one of the allowed ones (the message lists them all)."""
    values = [v for v in typing.get_args(annotation) if isinstance(v, str)]
    got = err.get("input")
    return did_you_mean(got, values).strip() or None if isinstance(got, str) else None


def _unknown_key_fix(key: str, model: type[BaseModel], loc: tuple[Any, ...], known_keys: frozenset[str]) -> str:
    """A did-you-mean among the keys of the object the key sits in (when that object's model is known), never the
    key itself: a key valid elsewhere in the file (``kind`` under ``corruption:``) gets the keys allowed here."""
    parent, _ = field_at(model, loc[:-1])
    here: list[str] = []
    if isinstance(parent, type) and issubclass(parent, BaseModel):
        here = sorted({f.alias or n for n, f in parent.model_fields.items()})
    choices = [k for k in (here or sorted(known_keys)) if k != key]
    guess = difflib.get_close_matches(key, choices, n=1)
    if guess:
        return f"did you mean {guess[0]!r}?"
    if here:
        return f"remove it; the keys allowed here are {', '.join(here)}"
    return "remove it; `circuitcheck schema` lists the allowed keys"


def explain(err: Any, path: Path_, model: type[BaseModel], smap: SourceMap, names: Names,
            known_keys: frozenset[str], pattern_help: dict[str, tuple[str, str]]) -> tuple[str, str | None]:
    """(message, fix) for one pydantic error at ``path`` (the part of its ``loc`` that exists in the data)."""
    kind, loc = err["type"], err["loc"]
    field = field_at(model, loc)
    if kind == "string_pattern_mismatch":
        pattern = err["ctx"]["pattern"]
        if pattern == ID_PATTERN:
            return _id_message(err.get("input"), "id" if loc and loc[-1] == "id" else "name")
        if pattern in pattern_help:
            return pattern_help[pattern]
        return err["msg"], "change it to match the pattern"
    if kind == "finite_number":
        return "expected a finite number", NOT_FINITE_FIX
    if kind == "extra_forbidden":
        return f"unknown key {loc[-1]!r}", _unknown_key_fix(str(loc[-1]), model, loc, known_keys)
    if kind == "missing" and loc and isinstance(loc[-1], int):  # a pair given fewer values
        count, example = _example_pair(field_at(model, loc[:-1])[0])
        return f"expected a list of {count} values", PAIR_FIX.format(count=count, example=example)
    if kind == "missing":
        return f"missing required key {loc[-1]!r}", f"add '{loc[-1]}: ...'"
    if kind == "union_tag_invalid":
        tags = [t.strip(" '") for t in str(err["ctx"].get("expected_tags", "")).split(",")]
        got = err["ctx"].get("tag")
        guess = difflib.get_close_matches(str(got), tags, n=1)
        tag = str(err["ctx"].get("discriminator", "kind")).strip("'")
        return err["msg"], f"did you mean {guess[0]!r}?" if guess else f"set '{tag}' to one of the listed values"
    if kind == "union_tag_not_found":
        tag = str(err["ctx"].get("discriminator", "kind")).strip("'")
        if tag == "kind":
            return "missing required key 'kind'", "add 'kind: ...', one of the kinds `circuitcheck schema` lists"
        arms = typing.get_args(field[0]) if typing.get_origin(field[0]) in (typing.Union, types.UnionType) else ()
        tags = [t for t in map(_kind_tag, arms) if t]
        return f"missing required key {tag!r}", f"add '{tag}: ...', one of: {', '.join(tags) or 'see the schema'}"
    if kind == "literal_error":
        return err["msg"].replace("Input should be", "expected"), literal_fix(err, field[0])
    if kind in (SYNTAX_ERROR, RULE_ERROR):  # the message shows the value already
        return err["ctx"]["message"], err["ctx"]["fix"] or None
    found = _type_error(kind, err, path, field, smap, names)
    if found is not None:
        return found
    return err["msg"].removeprefix("Value error, "), None
