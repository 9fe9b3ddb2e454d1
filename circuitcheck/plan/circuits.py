"""Circuits (:mod:`circuitcheck.spec.circuits`) checked against a model's shape and built into graphs.

Each circuit becomes a :class:`networkx.DiGraph` whose nodes are the spec's component values:
``Embed``, ``PosEmbed``, ``Head``, ``Mlp``, ``Logits``, and a head's inputs ``HeadInput`` (q, k, v).
A circuit edge ``0.0 -> 1.0.k`` is the graph edge ``Head(0, 0) -> HeadInput(Head(1, 0), "k")``
(attribute ``circuit=True``); each head input present also has the edge into its head
(``circuit=False``: the head computes from its inputs, it is not an edge one can cut).

Nothing here runs a forward pass: only ``n_layers``, ``n_heads``, whether the model has MLPs and a
positional embedding are read (:class:`ModelShape`). Errors are :class:`PlanError` at the offending
edge's (or node's) spec path; dangling nodes are warnings kept in :attr:`CompiledCircuit.warnings`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, cast

import networkx as nx

from circuitcheck.errors import PlanError
from circuitcheck.plan.components import has_pos_embed
from circuitcheck.spec.circuits import (
    NOT_TO_LOGITS_FIX,
    AllExcept,
    CircuitSpec,
    Edge,
    EdgeReceiver,
    Node,
    Sender,
    backward_edge_message,
    expand_nodes,
    order,
    reads_from,
)
from circuitcheck.spec.components import Embed, Head, HeadInput, Logits, Mlp, PosEmbed
from circuitcheck.spec.vacuity import ModelFacts
from circuitcheck.spec.yaml_source import SourceMap

Path = tuple[str | int, ...]


@dataclass(frozen=True)
class ModelShape(ModelFacts):
    """What a circuit is checked against: no weights, no forward pass (the shape the vacuity lint reads from a
    model card, here read from the loaded model)."""

    @classmethod
    def of(cls, model: Any) -> ModelShape:
        cfg = model.cfg
        return cls(
            int(cfg.n_layers), int(cfg.n_heads), not bool(cfg.attn_only), has_pos_embed(model),
            bool(getattr(cfg, "parallel_attn_mlp", False)),
        )

    def reads(self, sender: Sender, receiver: EdgeReceiver) -> bool:
        """Whether this model's ``receiver`` reads ``sender``: :func:`reads_from`, less the same-layer
        head -> MLP edges of parallel blocks (``parallel_attn_mlp``: GPT-NeoX/Pythia, GPT-J), whose
        ``mlpL`` reads ``ln2(resid_pre)``, the block's input, not the heads' output."""
        if self.parallel_attn_mlp and isinstance(sender, Head) and isinstance(receiver, Mlp):
            return sender.layer < receiver.layer
        return reads_from(sender, receiver)

    def senders(self) -> list[Sender]:
        """Every sender, in forward order: every component (embeddings, heads, MLPs)."""
        return cast(list[Sender], self.components())

    def receivers(self) -> list[EdgeReceiver]:
        """Every receiver, in forward order."""
        found: list[EdgeReceiver] = []
        for layer in range(self.n_layers):
            found += [HeadInput(Head(layer, h), x) for x in ("q", "k", "v") for h in range(self.n_heads)]
            found += [Mlp(layer)] if self.has_mlps else []
        return found + [Logits()]

    def all_edges(self) -> list[Edge]:
        """Every edge of the full model, ordered by receiver then sender."""
        senders = self.senders()
        return [Edge(s, r) for r in self.receivers() for s in senders if self.reads(s, r)]

    def problem(self, node: Sender | EdgeReceiver | Node) -> tuple[str, str] | None:
        """(message, fix) when the model lacks ``node``; None when it has it."""
        if isinstance(node, HeadInput):
            node = node.head
        if isinstance(node, PosEmbed) and not self.has_pos_embed:
            return "the model has no positional embedding (pos_embed)", "drop 'pos_embed' from the circuit"
        if isinstance(node, Head | Mlp) and node.layer >= self.n_layers:
            return (
                f"layer {node.layer} of '{node}' is out of range: the model has {self.n_layers} layer(s)",
                f"use a layer in 0..{self.n_layers - 1}",
            )
        if isinstance(node, Head) and node.head >= self.n_heads:
            return (
                f"head {node.head} of '{node}' is out of range: layer {node.layer} has {self.n_heads} head(s)",
                f"use a head in 0..{self.n_heads - 1}",
            )
        if isinstance(node, Mlp) and not self.has_mlps:
            return f"the model is attention-only: it has no '{node}'", "drop the MLP from the circuit"
        return None


@dataclass(frozen=True)
class CircuitWarning:
    """A circuit that compiles but probably does not say what was meant; shown by explain and kept in the plan."""

    path: Path
    message: str
    fix: str


@dataclass(frozen=True)
class CompiledCircuit:
    name: str
    graph: nx.DiGraph
    edges: tuple[Edge, ...]
    """The circuit's edges (the graph's edges with ``circuit=True``), in forward order."""
    removed: tuple[Edge, ...]
    """The full model's edges the circuit leaves out, in forward order."""
    n_model_edges: int
    warnings: tuple[CircuitWarning, ...]


def circuit_graph(edges: Iterable[Edge]) -> nx.DiGraph:
    """The DiGraph of ``edges``: a circuit edge per edge, and each head input's edge into its head."""
    graph = nx.DiGraph()
    for edge in edges:
        graph.add_edge(edge.sender, edge.receiver, circuit=True)
        if isinstance(edge.receiver, HeadInput):
            graph.add_edge(edge.receiver, edge.receiver.head, circuit=False)
    return graph


def _listed(spec: CircuitSpec, base: Path, shape: ModelShape) -> list[tuple[Edge, Path]]:
    """(edge, the spec path it comes from) for every edge the circuit keeps."""
    if isinstance(spec.edges, list):
        return [(e, base + ("edges", i)) for i, e in enumerate(spec.edges)]
    if isinstance(spec.edges, AllExcept):
        dropped = set(spec.edges.all_except)
        return [(e, base + ("edges",)) for e in shape.all_edges() if e not in dropped]
    assert spec.nodes is not None, "a circuit has edges or nodes"
    where = {node: base + ("nodes", i) for i, node in enumerate(spec.nodes)}
    present = [n for n in spec.nodes if shape.problem(n) is None]
    return [(e, where[e.sender]) for e in expand_nodes(present) if shape.reads(e.sender, e.receiver)]


def _node_errors(spec: CircuitSpec, base: Path, shape: ModelShape) -> list[PlanError]:
    """Nodes the model does not have, at the text that names them."""
    items: list[tuple[Edge | Node, Path]]
    if isinstance(spec.edges, list):
        items = [(e, base + ("edges", i)) for i, e in enumerate(spec.edges)]
    elif isinstance(spec.edges, AllExcept):
        items = [(e, base + ("edges", "all_except", i)) for i, e in enumerate(spec.edges.all_except)]
    else:
        items = [(n, base + ("nodes", i)) for i, n in enumerate(spec.nodes or [])]
    errors = []
    for item, path in items:
        ends = (item.sender, item.receiver) if isinstance(item, Edge) else (item,)
        for end in ends:
            problem = shape.problem(end)
            if problem is not None:
                errors.append(PlanError(path, *problem))
                break
        else:
            if isinstance(item, Edge) and not reads_from(item.sender, item.receiver):
                errors.append(PlanError(path, *backward_edge_message(item)))
            elif isinstance(item, Edge) and not shape.reads(item.sender, item.receiver):
                errors.append(PlanError(path, *_parallel_edge_message(item)))
    return errors


def _parallel_edge_message(edge: Edge) -> tuple[str, str]:
    """(message, fix) for a same-layer head -> MLP edge where the blocks run attention and the MLP in parallel."""
    layer = edge.receiver.layer if isinstance(edge.receiver, Mlp) else 0
    return (
        f"edge '{edge}' does not exist in this model: its blocks compute attention and the MLP in parallel "
        f"(parallel_attn_mlp, as in GPT-NeoX/Pythia and GPT-J), so mlp{layer} reads the block's input, "
        f"not the output of the heads of layer {layer}",
        f"drop the edge: {edge.sender} is read by the heads and MLPs of later layers and by logits",
    )


def _warnings(graph: nx.DiGraph, located: dict[Any, Path], name: str) -> list[CircuitWarning]:
    inputs = [n for n in graph if isinstance(n, Embed | PosEmbed)]
    fed = set(inputs).union(*(nx.descendants(graph, n) for n in inputs)) if inputs else set()
    feeds = nx.ancestors(graph, Logits()) | {Logits()}
    found = []
    for node in sorted((n for n in graph if not isinstance(n, HeadInput)), key=lambda n: (order(n), str(n))):
        if node not in fed:
            found.append(CircuitWarning(
                located[node], f"circuit {name!r}: {node} has no path from embed or pos_embed in the circuit, "
                "so it computes from ablated inputs only",
                f"add an edge into {node} from an earlier node of the circuit, or leave {node} out",
            ))
        if node not in feeds:
            found.append(CircuitWarning(
                located[node], f"circuit {name!r}: {node} has no path to logits in the circuit, "
                "so its edges change nothing the metric sees",
                f"add an edge from {node} to a later node of the circuit, or leave {node} out",
            ))
    return found


def compile_circuit(name: str, spec: CircuitSpec, shape: ModelShape) -> CompiledCircuit:
    """The circuit ``name`` as a graph on a model of ``shape``; raises the first PlanError (see
    :func:`compile_circuits` for all of them)."""
    errors = circuit_plan_errors(name, spec, shape)
    if errors:
        raise errors[0]
    return _build(name, spec, shape)


def circuit_plan_errors(name: str, spec: CircuitSpec, shape: ModelShape) -> list[PlanError]:
    """Everything wrong with the circuit on this model: nodes it lacks, and a circuit that reaches no logits."""
    base: Path = ("circuits", name)
    errors = _node_errors(spec, base, shape)
    if errors:
        return errors
    edges = [e for e, _ in _listed(spec, base, shape)]
    if not any(isinstance(e.receiver, Logits) for e in edges):
        field = ("nodes",) if spec.nodes is not None else ("edges",)
        example = max((e.sender for e in edges), key=order, default=Embed())
        errors.append(PlanError(
            base + field, f"circuit {name!r} never reaches logits on this model: no edge ends at 'logits'",
            NOT_TO_LOGITS_FIX.format(example=example),
        ))
    return errors


def _build(name: str, spec: CircuitSpec, shape: ModelShape) -> CompiledCircuit:
    base: Path = ("circuits", name)
    listed = _listed(spec, base, shape)
    graph = circuit_graph(e for e, _ in listed)
    if not nx.is_directed_acyclic_graph(graph):  # forward edges only: a cycle is a bug here, not in the file
        raise PlanError(base, f"circuit {name!r} is not acyclic: {nx.find_cycle(graph)}", "report this as a bug")
    located: dict[Any, Path] = {}
    for edge, path in listed:
        located.setdefault(edge.sender, path)
        located.setdefault(edge.receiver.head if isinstance(edge.receiver, HeadInput) else edge.receiver, path)
    kept = frozenset(e for e, _ in listed)
    everything = shape.all_edges()
    removed = tuple(e for e in everything if e not in kept)
    ordered = tuple(e for e in everything if e in kept)
    return CompiledCircuit(name, graph, ordered, removed, len(everything), tuple(_warnings(graph, located, name)))


def compile_circuits(circuits: dict[str, CircuitSpec], shape: ModelShape) -> tuple[dict[str, CompiledCircuit],
                                                                                   list[PlanError]]:
    """Every circuit of a file on a model of ``shape``: (the ones that compile, every error)."""
    compiled: dict[str, CompiledCircuit] = {}
    errors: list[PlanError] = []
    for name, spec in circuits.items():
        found = circuit_plan_errors(name, spec, shape)
        if found:
            errors += found
        else:
            compiled[name] = _build(name, spec, shape)
    return compiled, errors


def warning_text(warning: CircuitWarning, smap: SourceMap) -> str:
    """``file:line:col: message`` and the fix, as spec errors read."""
    return f"{smap.locate(warning.path)}: {warning.message}\n  fix: {warning.fix}"


def describe_circuit(circuit: CompiledCircuit, smap: SourceMap) -> list[str]:
    """Lines for ``circuitcheck explain``: the edges kept, the edges removed, with counts, and warnings."""
    kept = circuit.edges
    lines = [f"{len(kept)} of the model's {circuit.n_model_edges} edges kept:"]
    lines += [f"  {e}" for e in kept]
    lines.append(f"{len(circuit.removed)} edge(s) removed:")
    lines += [f"  {e}" for e in circuit.removed]
    lines += ["warning: " + warning_text(w, smap) for w in circuit.warnings]
    return lines
