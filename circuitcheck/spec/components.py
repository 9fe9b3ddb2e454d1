"""Component names, parsed once, when a hypothesis file loads, into frozen values.

    embed          the token embedding                   Embed()
    pos_embed      the positional embedding              PosEmbed()
    L.H            head H of layer L, e.g. 1.0           Head(1, 0)
    attnL          every head of layer L                 Attn(L)
    mlpL           the MLP of layer L                    Mlp(L)
    ...hook_...    a hook name, e.g. blocks.0.hook_resid_mid    Hook(name)

Path-patching receivers add a head's query, key or value input, ``L.H.q`` / ``L.H.k`` /
``L.H.v`` (:class:`HeadInput`), and ``logits``. Spec fields use the annotated types
:data:`ComponentRef`, :data:`HeadRef` and :data:`ReceiverRef`: pydantic runs the parser, a
value that does not parse is an error at its file position, and the value dumps back to the
text. Whether the model has that layer, head, MLP or hook is checked when the claim compiles
(:func:`circuitcheck.plan.components.resolve_component`); no later stage parses the text again.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal, cast

from pydantic import PlainSerializer, PlainValidator, WithJsonSchema
from pydantic_core import PydanticCustomError, PydanticKnownError


@dataclass(frozen=True)
class Embed:
    def __str__(self) -> str:
        return "embed"


@dataclass(frozen=True)
class PosEmbed:
    def __str__(self) -> str:
        return "pos_embed"


@dataclass(frozen=True)
class Head:
    layer: int
    head: int

    def __str__(self) -> str:
        return f"{self.layer}.{self.head}"


@dataclass(frozen=True)
class Attn:
    """Every head of one layer."""

    layer: int

    def __str__(self) -> str:
        return f"attn{self.layer}"


@dataclass(frozen=True)
class Mlp:
    layer: int

    def __str__(self) -> str:
        return f"mlp{self.layer}"


@dataclass(frozen=True)
class Hook:
    name: str

    def __str__(self) -> str:
        return self.name


Component = Embed | PosEmbed | Head | Attn | Mlp | Hook


@dataclass(frozen=True)
class HeadInput:
    """A head's query, key or value input (a path-patching receiver)."""

    head: Head
    input: Literal["q", "k", "v"]

    def __str__(self) -> str:
        return f"{self.head}.{self.input}"


@dataclass(frozen=True)
class Logits:
    def __str__(self) -> str:
        return "logits"


Receiver = Component | HeadInput | Logits

COMPONENT_FIX = "use embed, pos_embed, L.H (e.g. 0.0), attnL, mlpL, or a hook name"
RECEIVER_FIX = "use 'L.H.q', 'L.H.k', 'L.H.v', 'logits' or 'mlpL'"

_HEAD = re.compile(r"([0-9]+)\.([0-9]+)")
_LAYER = re.compile(r"(attn|mlp)([0-9]+)")
_HOOK = re.compile(r"[A-Za-z0-9_.]*hook_[A-Za-z0-9_]+")
_HEAD_INPUT = re.compile(r"([0-9]+)\.([0-9]+)\.([qkv])")


class ComponentSyntaxError(ValueError):
    """Text that is not a component (or head, or receiver); ``fix`` says what is."""

    def __init__(self, message: str, fix: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix


def _component(text: str) -> Component | None:
    if text == "embed":
        return Embed()
    if text == "pos_embed":
        return PosEmbed()
    if head := _HEAD.fullmatch(text):
        return Head(int(head.group(1)), int(head.group(2)))
    if layer := _LAYER.fullmatch(text):
        return (Attn if layer.group(1) == "attn" else Mlp)(int(layer.group(2)))
    if _HOOK.fullmatch(text):
        return Hook(text)
    return None


def parse_component(text: str) -> Component:
    """``embed``, ``pos_embed``, ``L.H``, ``attnL``, ``mlpL`` or a hook name, as a frozen value."""
    found = _component(text)
    if found is None:
        raise ComponentSyntaxError(f"cannot parse component {text!r}", COMPONENT_FIX)
    return found


def parse_head(text: str) -> Head:
    """``"L.H"`` -> ``Head(L, H)``."""
    head = _HEAD.fullmatch(text)
    if head is None:
        raise ComponentSyntaxError(f"expected a head as 'L.H', got {text!r}")
    return Head(int(head.group(1)), int(head.group(2)))


def parse_receiver(text: str) -> Receiver:
    """``L.H.q`` / ``L.H.k`` / ``L.H.v``, ``logits``, or a component (the claim says which it accepts)."""
    if text == "logits":
        return Logits()
    if head_input := _HEAD_INPUT.fullmatch(text):
        qkv = cast(Literal["q", "k", "v"], head_input.group(3))  # the pattern admits only these
        return HeadInput(Head(int(head_input.group(1)), int(head_input.group(2))), qkv)
    found = _component(text)
    if found is None:
        raise ComponentSyntaxError(f"unknown receiver {text!r}", RECEIVER_FIX)
    return found


SYNTAX_ERROR = "component_syntax"
"""The pydantic error type of text these parsers refuse; its context holds ``message`` and ``fix``."""


def _validator(parse: Callable[[str], object], parsed: Any) -> PlainValidator:
    """Parse text with ``parse``; keep a value already ``parsed`` (a spec built in Python)."""

    def validate(value: object) -> object:
        if isinstance(value, parsed):
            return value
        if not isinstance(value, str):
            raise PydanticKnownError("string_type")
        try:
            return parse(value)
        except ComponentSyntaxError as err:
            raise PydanticCustomError(
                SYNTAX_ERROR, "{message}", {"message": err.message, "fix": err.fix or ""}
            ) from None

    return PlainValidator(validate)


_AS_TEXT = PlainSerializer(str, return_type=str)
_TEXT_SCHEMA = WithJsonSchema({"type": "string"})

ComponentRef = Annotated[Component, _validator(parse_component, Component), _AS_TEXT, _TEXT_SCHEMA]
"""A spec field holding one component name."""
HeadRef = Annotated[Head, _validator(parse_head, Head), _AS_TEXT, _TEXT_SCHEMA]
"""A spec field holding one head, ``L.H``."""
ReceiverRef = Annotated[Receiver, _validator(parse_receiver, Receiver), _AS_TEXT, _TEXT_SCHEMA]
"""A spec field holding one path-patching receiver."""
