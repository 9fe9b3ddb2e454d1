"""The reference of every claim kind, metric and dataset kind, generated from the code that defines them.

Each claim kind documents itself in its class (:class:`circuitcheck.claims.base.ClaimSpec`): the
docstring says what it asserts, ``formula`` the exact estimate (every ratio's numerator and
denominator), ``resamples`` what its interval resamples, ``example`` one worked claim (YAML, the items
of a ``claims:`` list) and ``traps`` its known pitfalls; the fields come from the pydantic model (type,
default, description). Metrics document themselves by their docstrings, dataset kinds by their
docstrings and fields. ``circuitcheck docs KIND`` prints :func:`kind_text`; ``scripts/build_docs.py``
writes the documentation site's pages from :func:`kind_markdown`, :func:`metric_markdown` and
:func:`dataset_markdown`. Nothing here loads a model or torch.
"""

from __future__ import annotations

import textwrap
import types
import typing
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel

from circuitcheck.claims.base import ClaimSpec
from circuitcheck.errors import CircuitcheckError
from circuitcheck.metrics import metrics
from circuitcheck.plugins import load_extensions
from circuitcheck.spec.components import Component, Receiver
from circuitcheck.spec.kinds import ClaimFields, claim_kinds, dataset_kinds

EXAMPLE_PRELUDE = """\
version: 1
name: example
model: trigram
dataset: {kind: trigram, n_seqs: 200, seed: 0, density: 0.05}
positions:
  X: {role: X}
  Y: {role: Y}
  interior: {range: [1, 49]}
circuits:
  head-path:
    edges: [embed -> 0.0.v, pos_embed -> 0.0.k, embed -> 0.0.q, 0.0 -> logits, embed -> logits]
claims:
"""
"""The file every example claim is read in: the trigram zoo model, its dataset, the selections X, Y and
``interior``, and one circuit. An example that needs another model or dataset says so in its own text."""

DOC_ATTRIBUTES = ("formula", "resamples", "example")
"""The documentation a built-in kind must carry (``traps`` may be empty)."""


class UnknownKind(CircuitcheckError):
    """``circuitcheck docs`` was asked for a kind no registry knows."""


@dataclass(frozen=True)
class FieldDoc:
    name: str
    type: str
    default: str  # "required" when there is none
    meaning: str


def _type_name(annotation: Any) -> str:
    """A field's type as a file author reads it: ``'a' | 'b'``, ``list[component]``, ``int``."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        base, *meta = args
        for m in meta:
            if type(m).__name__ == "Reference":
                return f"{m.to} name"
        return _nice_type(base, meta)
    if origin is Literal:
        return " | ".join(repr(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in args if a is not type(None)) + (
            " | null" if type(None) in args else ""
        )
    if origin in (list, tuple, dict, set, frozenset):
        inner = ", ".join("..." if a is Ellipsis else _type_name(a) for a in args)
        return f"{origin.__name__}[{inner}]"
    if annotation is type(None):
        return "null"
    name = getattr(annotation, "__name__", None) or str(annotation)
    return {"Head": "head 'L.H'"}.get(name, name)


def _nice_type(annotation: Any, metadata: Any = ()) -> str:
    """The field type, with the component syntaxes and named references spelled out."""
    for m in metadata:
        if type(m).__name__ == "Reference":
            return f"{m.to} name"
    if annotation == Receiver:
        return "receiver ('L.H.q' / '.k' / '.v', mlpL, logits)"
    if annotation == Component:
        return "component (embed, pos_embed, 'L.H', attnL, mlpL, hook name)"
    if typing.get_origin(annotation) is list and len(typing.get_args(annotation)) == 1:
        inner = typing.get_args(annotation)[0]
        return f"list[{_nice_type(inner)}]"
    return _type_name(annotation)


def _default(info: Any) -> str:
    if info.is_required():
        return "required"
    if info.default_factory is not None:
        return repr(info.default_factory())
    return "null" if info.default is None else repr(info.default)


def fields_of(model: type[BaseModel], skip: tuple[str, ...] = ()) -> list[FieldDoc]:
    out = []
    for name, info in model.model_fields.items():
        if name in skip:
            continue
        shown = info.alias or name
        out.append(FieldDoc(shown, _nice_type(info.annotation, info.metadata), _default(info), info.description or ""))
    return out


def _nested_models(model: type[BaseModel]) -> list[type[BaseModel]]:
    """The pydantic models a kind's own fields hold (a corruption, a predicate, a replacement), in order."""
    seen: list[type[BaseModel]] = []

    def walk(annotation: Any) -> None:
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            if annotation not in seen:
                seen.append(annotation)
            return
        for arg in typing.get_args(annotation):
            walk(arg)

    for name, info in model.model_fields.items():
        if name not in ClaimFields.model_fields:
            walk(info.annotation)
    return seen


def _doc(cls: type) -> str:
    return " ".join((cls.__doc__ or "").split())


def summary(cls: type) -> str:
    """The first clause of a class's docstring: what a claim kind asserts, what a dataset kind holds."""
    return _doc(cls).split(": ")[0].split(". ")[0].rstrip(".")


def claim_class(kind: str) -> type[ClaimSpec]:
    load_extensions()
    if kind not in claim_kinds.names():
        raise UnknownKind(f"unknown claim kind {kind!r}; known kinds: {', '.join(claim_kinds.names())}")
    return typing.cast(type[ClaimSpec], claim_kinds.get(kind))


def missing_docs(cls: type) -> list[str]:
    """The documentation attributes ``cls`` lacks (empty: it documents itself)."""
    return [attr for attr in DOC_ATTRIBUTES if not str(getattr(cls, attr, "") or "").strip()]


def example_file(kind: str) -> str:
    """The kind's worked example as a whole hypothesis file (the prelude plus its claims)."""
    cls = claim_class(kind)
    example = str(getattr(cls, "example", "") or "").strip("\n")
    if not example or example.startswith("version:"):  # a whole file, for a kind the trigram model cannot show
        return example + "\n" if example else ""
    indented = "\n".join(f"  {line}" if line else "" for line in example.splitlines())
    return EXAMPLE_PRELUDE + indented + "\n"


def kind_fields(kind: str) -> list[FieldDoc]:
    return fields_of(claim_class(kind), skip=tuple(ClaimFields.model_fields))


def _table(rows: list[FieldDoc]) -> list[str]:
    lines = ["| field | type | default | meaning |", "|---|---|---|---|"]
    for f in rows:
        cells = [f"`{f.name}`", f.type, f.default, f.meaning]
        lines.append("| " + " | ".join(c.replace("|", "\\|").replace("\n", " ") for c in cells) + " |")
    return lines


def kind_markdown(kind: str) -> str:
    """The kind's documentation page (Markdown)."""
    cls = claim_class(kind)
    lines = [f"# `{kind}`", "", _doc(cls), "", "## Fields", ""]
    lines += _table(kind_fields(kind))
    lines += ["", "Plus the keys every claim has (`id`, `statement`, `threshold`, `expect`, ...; see the "
              "[file format](../file-format.md))."]
    if getattr(cls, "supports_floor", False):
        lines[-1] += " This kind takes a `floor:` (its measurements carry per-example scores)."
    for nested in _nested_models(cls):
        lines += ["", f"### `{nested.__name__}`", "", _doc(nested), ""]
        lines += _table(fields_of(nested))
    lines += ["", "## Estimate", "", "```text", str(getattr(cls, "formula", "")).strip(), "```", ""]
    lines += ["## Interval", "", str(getattr(cls, "resamples", "")).strip(), ""]
    lines += ["## Example", "", "A whole file; `circuitcheck validate` accepts it as written:", "", "```yaml",
              example_file(kind).rstrip("\n"), "```", ""]
    traps = tuple(getattr(cls, "traps", ()) or ())
    if traps:
        lines += ["## Traps", ""] + [f"- {t}" for t in traps] + [""]
    return "\n".join(lines)


def kind_text(kind: str) -> str:
    """What ``circuitcheck docs KIND`` prints: fields, formula, interval, example and traps."""
    cls = claim_class(kind)
    out = [f"{kind}: {_doc(cls)}", "", "Fields (besides id, statement, threshold and the other keys every claim has):"]
    for f in kind_fields(kind):
        out.append(f"  {f.name}: {f.type} = {f.default}")
        if f.meaning:
            out.append(textwrap.fill(f.meaning, 110, initial_indent="      ", subsequent_indent="      "))
    for nested in _nested_models(cls):
        out.append(f"  {nested.__name__}: {_doc(nested)}")
        for f in fields_of(nested):
            out.append(f"    {f.name}: {f.type} = {f.default}" + (f"  ({f.meaning})" if f.meaning else ""))
    out += ["", "Formula (estimate):"]
    out += [f"  {line}" for line in str(getattr(cls, "formula", "")).strip().splitlines()]
    out += ["", "Interval:", textwrap.fill(str(getattr(cls, "resamples", "")), 110, initial_indent="  ",
                                           subsequent_indent="  ")]
    out += ["", "Example (a whole file; `circuitcheck validate` accepts it):", ""]
    out += [f"  {line}" if line else "" for line in example_file(kind).splitlines()]
    traps = tuple(getattr(cls, "traps", ()) or ())
    if traps:
        out += ["", "Traps:"] + [textwrap.fill(t, 110, initial_indent="  - ", subsequent_indent="    ") for t in traps]
    return "\n".join(out) + "\n"


def reference_text(name: str) -> str:
    """``circuitcheck docs NAME``: a claim kind's reference, or else a metric's or a dataset kind's page."""
    load_extensions()
    if name in claim_kinds.names():
        return kind_text(name)
    if name in metrics.names():
        return metric_markdown(name)
    if name in dataset_kinds.names():
        return dataset_markdown(name)
    return kind_text(name)  # raises UnknownKind with the known kinds


def kinds_text() -> str:
    """What ``circuitcheck docs`` prints: every claim kind, metric and dataset kind, one line each."""
    load_extensions()
    out = ["Claim kinds (circuitcheck docs KIND for one):"]
    width = max(map(len, claim_kinds.names()))
    out += [f"  {k:<{width}}  {summary(claim_kinds.get(k))}" for k in claim_kinds.names()]
    out += ["", "Metrics:"] + [f"  {m.name}: {m.description}" for m in (metrics.get(n) for n in metrics.names())]
    out += ["", "Dataset kinds:"] + [f"  {k}: {summary(dataset_kinds.get(k))}" for k in dataset_kinds.names()]
    return "\n".join(out) + "\n"


def metric_markdown(name: str) -> str:
    load_extensions()
    m = metrics.get(name)
    direction = "higher is better" if m.higher_is_better else "lower is better (claims that measure a drop flip "
    direction += "" if m.higher_is_better else "its sign, so a rise counts as worse)"
    doc = " ".join((m.fn.__doc__ or m.description).split())
    reads = "reads the clean run's logits at the same positions" if m.reads_clean else "reads only this run's logits"
    return "\n".join([
        f"# `{name}`", "", doc, "", f"- Direction: {direction}.", f"- Input: the logits at the scored positions; "
        f"it {reads}.", "- Output: one score per scored position; claims average it (or sum it per sequence).", "",
        f'Registered with `@metric("{name}", higher_is_better={m.higher_is_better})` in '
        f"`{m.fn.__module__.replace('.', '/')}.py`.", "",
    ])


def dataset_markdown(kind: str) -> str:
    load_extensions()
    cls = dataset_kinds.get(kind)
    lines = [f"# `{kind}`", "", _doc(cls), "", "## Fields", ""]
    lines += _table(fields_of(cls))
    lines += ["", f"Defined in `{cls.__module__.replace('.', '/')}.py`.", ""]
    return "\n".join(lines)
