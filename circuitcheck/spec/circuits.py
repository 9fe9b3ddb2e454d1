"""Circuits as graphs: the file-level ``circuits:`` block, parsed and checked without a model.

A circuit is a named set of edges ``sender -> receiver``::

    circuits:
      induction:
        edges: ["0.0 -> 1.0.k", "embed -> 1.0.q", "embed -> 1.0.v", "1.0 -> logits"]
      heads_only:
        nodes: [embed, 0.0, 1.0, logits]        # every edge among these nodes
      all_but_one:
        edges: {all_except: ["0.1 -> logits"]}  # the full model, less these edges

Senders are ``embed``, ``pos_embed``, ``L.H`` and ``mlpL``; receivers are a head's query, key or
value input ``L.H.q`` / ``L.H.k`` / ``L.H.v``, ``mlpL`` and ``logits``. Each side is parsed by
:mod:`circuitcheck.spec.components`. An edge must go forward in the model (:func:`reads_from`);
that, duplicates, and whether the circuit reaches ``logits`` at all are checked here, at the
edge's file position. What needs the model (layer and head ranges, MLPs, ``pos_embed``, the full
edge set of ``all_except``) is checked when the file compiles (:mod:`circuitcheck.plan.circuits`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Annotated, Any, Union

from pydantic import Discriminator, Field, PlainSerializer, PlainValidator, Tag, WithJsonSchema, model_validator
from pydantic_core import PydanticCustomError, PydanticKnownError

from circuitcheck.errors import SpecError
from circuitcheck.spec.base import Strict, rule_error
from circuitcheck.spec.components import (
    SYNTAX_ERROR,
    ComponentSyntaxError,
    Embed,
    Head,
    HeadInput,
    Logits,
    Mlp,
    PosEmbed,
    parse_component,
    parse_receiver,
)
from circuitcheck.spec.yaml_source import SourceMap

Sender = Embed | PosEmbed | Head | Mlp
EdgeReceiver = HeadInput | Mlp | Logits
Node = Embed | PosEmbed | Head | Mlp | Logits
"""What the node-only shorthand lists: a head stands for its query, key and value inputs."""

ARROW = "->"
SENDER_FIX = "senders are embed, pos_embed, a head 'L.H' (e.g. 0.1) or an MLP 'mlpL'"
RECEIVER_FIX = "receivers are a head's input 'L.H.q', 'L.H.k' or 'L.H.v', an MLP 'mlpL', or 'logits'"
EDGE_FIX = f"write 'sender -> receiver', e.g. '0.0 -> 1.0.k'; {SENDER_FIX}; {RECEIVER_FIX}"
NODE_FIX = "list nodes: embed, pos_embed, heads 'L.H', MLPs 'mlpL' and logits"
CIRCUIT_NAME = r"^[A-Za-z][A-Za-z0-9_.-]*$"


@dataclass(frozen=True, order=False)
class Edge:
    """One edge of a circuit: ``sender``'s output reaching ``receiver``'s input."""

    sender: Sender
    receiver: EdgeReceiver

    def __str__(self) -> str:
        return f"{self.sender} {ARROW} {self.receiver}"


def _parsed_or_none(parse: Callable[[str], Any], text: str) -> Any:
    """``parse(text)``, or None where it is not that syntax: the caller then explains what ``text`` is instead."""
    try:
        return parse(text)
    except ComponentSyntaxError:
        return None


def _sender(text: str) -> Sender:
    if text == "logits":
        raise ComponentSyntaxError("'logits' only receives; it cannot send", SENDER_FIX)
    found = _parsed_or_none(parse_component, text)
    if isinstance(found, Embed | PosEmbed | Head | Mlp):
        return found
    as_receiver = _parsed_or_none(parse_receiver, text)
    if isinstance(as_receiver, HeadInput):
        raise ComponentSyntaxError(
            f"{text!r} is a head's input; a head sends from its output", f"write '{as_receiver.head} -> ...'"
        )
    if found is not None and str(found).startswith("attn"):
        raise ComponentSyntaxError(f"{text!r} is a whole layer; an edge's sender is one head", SENDER_FIX)
    raise ComponentSyntaxError(f"{text!r} cannot be an edge's sender", SENDER_FIX)


def _receiver(text: str, sender: Sender) -> EdgeReceiver:
    found = parse_receiver(text)  # raises with RECEIVER-style fix
    if isinstance(found, HeadInput | Mlp | Logits):
        return found
    if isinstance(found, Head):
        raise ComponentSyntaxError(
            f"head {found} receives through its query, key or value input, not as a whole",
            f"write '{sender} -> {found}.q', '... {found}.k' or '... {found}.v' "
            "(the 'nodes:' shorthand connects all three)",
        )
    raise ComponentSyntaxError(f"{text!r} cannot be an edge's receiver", RECEIVER_FIX)


def parse_edge(text: str) -> Edge:
    """``"0.0 -> 1.0.k"`` -> ``Edge(Head(0, 0), HeadInput(Head(1, 0), "k"))``; each side by the component parser."""
    parts = text.split(ARROW)
    if len(parts) != 2 or not parts[0].strip() or not parts[1].strip():
        raise ComponentSyntaxError(f"cannot parse edge {text!r}: expected one 'sender {ARROW} receiver'", EDGE_FIX)
    sender = _sender(parts[0].strip())
    return Edge(sender, _receiver(parts[1].strip(), sender))


def parse_node(text: str) -> Node:
    """A node of the shorthand: ``embed``, ``pos_embed``, ``L.H``, ``mlpL`` or ``logits``."""
    if text == "logits":
        return Logits()
    found = _parsed_or_none(parse_component, text)
    if isinstance(found, Embed | PosEmbed | Head | Mlp):
        return found
    if found is not None and str(found).startswith("attn"):
        raise ComponentSyntaxError(f"{text!r} is a whole layer; list its heads one by one", NODE_FIX)
    as_receiver = _parsed_or_none(parse_receiver, text)
    if isinstance(as_receiver, HeadInput):
        raise ComponentSyntaxError(
            f"{text!r} is a head's input, not a node",
            f"list the head '{as_receiver.head}' (all of its inputs), or write single edges under 'edges:'",
        )
    raise ComponentSyntaxError(f"{text!r} is not a circuit node", NODE_FIX)


def _parsed(parse: Any, kind: type | tuple[type, ...]) -> PlainValidator:
    def validate(value: object) -> object:
        if isinstance(value, kind):
            return value
        if isinstance(value, float):  # an unquoted head: YAML reads 1.0 as a number (and 1.10 as 1.1)
            raise PydanticCustomError(
                SYNTAX_ERROR, "{message}",
                {"message": f"YAML reads this unquoted head as the number {value!r}", "fix": "quote it, e.g. '1.0'"},
            )
        if not isinstance(value, str):
            raise PydanticKnownError("string_type")
        try:
            return parse(value)
        except ComponentSyntaxError as err:
            context = {"message": err.message, "fix": err.fix or ""}
            raise PydanticCustomError(SYNTAX_ERROR, "{message}", context) from None

    return PlainValidator(validate)


_AS_TEXT = PlainSerializer(str, return_type=str)
EdgeRef = Annotated[
    Edge, _parsed(parse_edge, Edge), _AS_TEXT,
    WithJsonSchema({"type": "string", "description": "'sender -> receiver', e.g. '0.0 -> 1.0.k'"}),
]
NodeRef = Annotated[
    Node, _parsed(parse_node, (Embed, PosEmbed, Head, Mlp, Logits)), _AS_TEXT,
    WithJsonSchema({"type": "string", "description": "embed, pos_embed, 'L.H', 'mlpL' or logits"}),
]


class AllExcept(Strict):
    """Every edge of the full model except these."""

    all_except: list[EdgeRef] = Field(description="Edges the circuit leaves out; the rest of the model is kept")


def _edges_form(value: Any) -> str:
    return "all_except" if isinstance(value, dict | AllExcept) else "list"


EdgeList = Annotated[
    Union[Annotated[list[EdgeRef], Tag("list")], Annotated[AllExcept, Tag("all_except")]],  # noqa: UP007
    Discriminator(_edges_form),
]
"""A list of edges, or ``{all_except: [...]}``; the value's shape picks which, so an error names one form."""


class CircuitSpec(Strict):
    """One named circuit: ``edges`` (a list, or ``{all_except: [...]}``) or the node shorthand ``nodes``."""

    edges: EdgeList | None = Field(
        default=None, description="Edges 'sender -> receiver', or {all_except: [...]} for the full model less those"
    )
    nodes: list[NodeRef] | None = Field(
        default=None, min_length=1,
        description="Shorthand: every forward edge among these nodes; a head receives on its q, k and v inputs",
    )

    @model_validator(mode="after")
    def _one_form(self) -> CircuitSpec:
        if (self.edges is None) == (self.nodes is None):
            both = self.edges is not None
            raise rule_error(
                "give exactly one of 'edges' or 'nodes'",
                "keep one of the two: a circuit is its edges, or every edge among its nodes" if both
                else "add 'edges: [\"sender -> receiver\", ...]' or 'nodes: [...]'",
            )
        return self


CircuitName = Annotated[str, Field(pattern=CIRCUIT_NAME)]


def order(node: Sender | EdgeReceiver | Node) -> float:
    """Where a node computes in the forward pass: inputs 0, head L at 2L + 1, mlpL at 2L + 2, logits last.

    A head's input sits at its head's place: it is read as the head computes."""
    if isinstance(node, Embed | PosEmbed):
        return 0
    if isinstance(node, HeadInput):
        node = node.head
    if isinstance(node, Head):
        return 2 * node.layer + 1
    if isinstance(node, Mlp):
        return 2 * node.layer + 2
    return float("inf")


def reads_from(sender: Sender, receiver: EdgeReceiver) -> bool:
    """Whether the model's ``receiver`` reads ``sender``'s output: a head of layer L reads the senders of
    layers < L, mlpL reads the heads of layers <= L and the MLPs of layers < L, logits read everything."""
    return order(sender) < order(receiver)


def _what_reads(receiver: EdgeReceiver) -> str:
    if isinstance(receiver, HeadInput):
        layer = receiver.head.layer
        earlier = "nothing else" if layer == 0 else f"the heads and MLPs of layers {layer - 1} and below"
        return f"head {receiver.head} reads embed, pos_embed and {earlier}"
    assert isinstance(receiver, Mlp), "logits read everything"
    layer = receiver.layer
    mlps = "" if layer == 0 else f" and the MLPs of layers {layer - 1} and below"
    heads = "layer 0" if layer == 0 else f"layers {layer} and below"
    return f"mlp{layer} reads embed, pos_embed, the heads of {heads}{mlps}"


def backward_edge_message(edge: Edge) -> tuple[str, str]:
    """(message, fix) for an edge that does not go forward in the model."""
    return (
        f"edge '{edge}' does not go forward in the model: {_what_reads(edge.receiver)}",
        "point the edge from an earlier sender to a later receiver (did you swap its two ends?)",
    )


def expand_nodes(nodes: Iterable[Node], senders_exist: Iterable[Sender] | None = None) -> list[Edge]:
    """Every forward edge among ``nodes``: a head node receives on its q, k and v inputs."""
    listed = list(dict.fromkeys(nodes))
    edges: list[Edge] = []
    for receiver_node in listed:
        if isinstance(receiver_node, Head):
            receivers: list[EdgeReceiver] = [HeadInput(receiver_node, x) for x in ("q", "k", "v")]
        elif isinstance(receiver_node, Mlp | Logits):
            receivers = [receiver_node]
        else:
            continue
        for sender in listed:
            if isinstance(sender, Logits):
                continue
            edges += [Edge(sender, r) for r in receivers if reads_from(sender, r)]
    return edges


NOT_TO_LOGITS_FIX = "add an edge into logits, e.g. '{example} -> logits'"


def _edge_list(spec: CircuitSpec) -> list[Edge]:
    if isinstance(spec.edges, list):
        return spec.edges
    assert spec.nodes is not None, "a circuit has edges or nodes"
    return expand_nodes(spec.nodes)


def circuit_errors(circuits: dict[str, CircuitSpec], smap: SourceMap) -> list[SpecError]:
    """What is wrong with the circuits without a model: backward or duplicate edges, duplicate nodes,
    and circuits whose edges never reach ``logits``. Each error sits at its edge's (or node's) text."""
    errors: list[SpecError] = []
    for name, spec in circuits.items():
        base: tuple[str | int, ...] = ("circuits", name)
        listed: list[Edge] | list[Node] = []
        if isinstance(spec.edges, list):
            field: tuple[str | int, ...] = ("edges",)
            listed = spec.edges
        elif isinstance(spec.edges, AllExcept):
            field = ("edges", "all_except")
            listed = spec.edges.all_except
        else:
            field = ("nodes",)
            listed = list(spec.nodes or [])
        seen: dict[object, int] = {}
        for i, item in enumerate(listed):
            path = base + field + (i,)
            where, dotted = smap.locate(path), ".".join(map(str, path))
            if item in seen:
                errors.append(SpecError(
                    where, dotted, f"'{item}' is listed twice (first as item {seen[item]})", "list it once"
                ))
                continue
            seen[item] = i
            if isinstance(item, Edge) and not reads_from(item.sender, item.receiver):
                errors.append(SpecError(where, dotted, *backward_edge_message(item)))
        if isinstance(spec.edges, AllExcept):
            continue  # the full model reaches logits; whether anything is left is checked on the model
        edges = _edge_list(spec)
        if not any(isinstance(e.receiver, Logits) for e in edges):
            senders = [e.sender for e in edges] or [Embed()]
            example = max(senders, key=order)
            path = base + field
            errors.append(SpecError(
                smap.locate(path), ".".join(map(str, path)),
                f"circuit {name!r} never reaches logits: no edge ends at 'logits', "
                "so the circuit's output would be the fully ablated model's",
                NOT_TO_LOGITS_FIX.format(example=example) if spec.nodes is None else "add 'logits' to the nodes",
            ))
    return errors
