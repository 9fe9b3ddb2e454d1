"""The ``circuits:`` block: parsing, model-free checks at file positions, graphs on a model's shape, explain."""

from __future__ import annotations

import json

import networkx as nx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from circuitcheck.cli import main
from circuitcheck.errors import SpecErrors
from circuitcheck.plan.circuits import ModelShape, compile_circuit, compile_circuits, describe_circuit
from circuitcheck.spec.circuits import CircuitSpec, Edge, expand_nodes, parse_edge, parse_node, reads_from
from circuitcheck.spec.components import ComponentSyntaxError, Embed, Head, HeadInput, Logits, Mlp
from circuitcheck.spec.hypothesis import load_hypothesis
from circuitcheck.spec.yaml_source import SourceMap

HEADER = """
version: 1
model: trigram
dataset: {kind: trigram, n_seqs: 20, seed: 1, density: 0.05}
positions:
  Y: {role: Y}
claims:
  - {id: T8, statement: s, kind: ablation, mode: necessity, components: ["0.0"], method: zero, positions: Y,
     metric: accuracy, effect: relative_drop, threshold: {at_least: 0.5}}
circuits:
"""
SHAPE = ModelShape(n_layers=2, n_heads=3, has_mlps=True, has_pos_embed=True)


def _errors(write_yaml, circuits: str) -> str:
    with pytest.raises(SpecErrors) as info:
        load_hypothesis(write_yaml(HEADER + circuits))
    return str(info.value)


# ---- parsing ----------------------------------------------------------------------------------------


def test_edges_parse_with_the_component_parser():
    assert parse_edge("0.0 -> 1.2.k") == Edge(Head(0, 0), HeadInput(Head(1, 2), "k"))
    assert parse_edge("embed->mlp0") == Edge(Embed(), Mlp(0))
    assert parse_edge("  mlp1 ->  logits ") == Edge(Mlp(1), Logits())
    assert str(parse_edge("0.1->1.0.v")) == "0.1 -> 1.0.v"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0.0 => 1.0.k", "expected one 'sender -> receiver'"),
        ("0.0 -> 1.0.k -> logits", "expected one 'sender -> receiver'"),
        ("logits -> 1.0.q", "'logits' only receives"),
        ("1.0.q -> logits", "is a head's input; a head sends from its output"),
        ("attn0 -> logits", "is a whole layer; an edge's sender is one head"),
        ("0.0 -> 1.0", "receives through its query, key or value input"),
        ("0.0 -> hook_embed", "cannot be an edge's receiver"),
        ("0.0 -> 1.0.x", "unknown receiver"),
    ],
)
def test_bad_edges_say_what_is_wrong(text, message):
    with pytest.raises(ComponentSyntaxError, match=message) as info:
        parse_edge(text)
    assert info.value.fix


def test_nodes_refuse_inputs_and_layers():
    assert parse_node("logits") == Logits()
    with pytest.raises(ComponentSyntaxError, match="is a head's input, not a node"):
        parse_node("1.0.q")
    with pytest.raises(ComponentSyntaxError, match="list its heads one by one"):
        parse_node("attn1")


def test_forward_order():
    assert reads_from(Head(0, 0), HeadInput(Head(1, 0), "q"))
    assert not reads_from(Head(1, 0), HeadInput(Head(1, 1), "q"))  # same layer: not yet computed
    assert reads_from(Head(1, 0), Mlp(1)) and not reads_from(Mlp(1), Mlp(1)) and reads_from(Mlp(0), Mlp(1))
    assert not reads_from(Mlp(0), HeadInput(Head(0, 0), "k"))
    assert all(reads_from(s, Logits()) for s in SHAPE.senders())


# ---- the file: errors at the edge's text ------------------------------------------------------------


def test_a_valid_block_loads(write_yaml):
    spec, _ = load_hypothesis(write_yaml(HEADER + """
  induction:
    edges: ["0.0 -> 1.0.k", "embed -> 1.0.q", "1.0 -> logits"]
  shorthand:
    nodes: [embed, "0.0", mlp0, logits]
  almost_all:
    edges: {all_except: ["0.0 -> logits"]}
"""))
    assert spec.circuits["induction"].edges[0] == parse_edge("0.0 -> 1.0.k")
    assert spec.circuits["shorthand"].nodes == [Embed(), Head(0, 0), Mlp(0), Logits()]
    assert spec.model_dump()["circuits"]["almost_all"]["edges"] == {"all_except": ["0.0 -> logits"]}


def test_syntax_errors_point_at_the_edge(write_yaml):
    text = _errors(write_yaml, '  c:\n    edges: ["0.0 -> logits", "1.0 => 0.0.q"]\n')
    assert ":11:30: circuits.c.edges.1: cannot parse edge '1.0 => 0.0.q'" in text
    assert "fix: write 'sender -> receiver'" in text


def test_backward_edges_point_at_the_edge(write_yaml):
    text = _errors(write_yaml, '  c:\n    edges: ["0.0 -> logits", "1.0 -> 0.1.q", "mlp0 -> mlp0"]\n')
    assert (":11:30: circuits.c.edges.1: edge '1.0 -> 0.1.q' does not go forward in the model: "
            "head 0.1 reads embed, pos_embed and nothing else") in text
    assert ":11:46: circuits.c.edges.2: edge 'mlp0 -> mlp0' does not go forward" in text
    assert "fix: point the edge from an earlier sender to a later receiver" in text


def test_duplicates_and_missing_logits(write_yaml):
    circuits = '  c:\n    edges: ["0.0 -> logits", "0.0 -> logits"]\n  d:\n    edges: ["0.0 -> 1.0.k"]\n'
    text = _errors(write_yaml, circuits)
    assert ":11:30: circuits.c.edges.1: '0.0 -> logits' is listed twice (first as item 0)" in text
    assert ":13:12: circuits.d.edges: circuit 'd' never reaches logits: no edge ends at 'logits'" in text
    assert "fix: add an edge into logits, e.g. '0.0 -> logits'" in text


def test_unquoted_heads_and_the_two_forms(write_yaml):
    text = _errors(write_yaml, "  c:\n    nodes: [embed, 0.0, logits]\n  d: {nodes: [embed], edges: []}\n")
    assert ":11:20: circuits.c.nodes.1: YAML reads this unquoted head as the number 0.0" in text
    assert "circuits.d: give exactly one of 'edges' or 'nodes'" in text


def test_schema_lists_the_circuits_block():
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["schema"]) == 0
    schema = json.loads(out.getvalue())
    assert "circuits" in schema["properties"]
    assert "all_except" in json.dumps(schema)


# ---- on a model's shape -------------------------------------------------------------------------------


def _spec(**fields) -> CircuitSpec:
    return CircuitSpec.model_validate(fields)


def test_full_model_edge_count():
    # receivers: per layer 3 heads x (q, k, v) + mlp; senders: embed, pos_embed, 3 heads + mlp per layer
    # layer 0 heads read 2 senders (9 receivers), mlp0 reads 5; layer 1 heads read 6, mlp1 reads 9; logits 10
    assert len(SHAPE.all_edges()) == 9 * 2 + 5 + 9 * 6 + 9 + 10
    assert all(reads_from(e.sender, e.receiver) for e in SHAPE.all_edges())


def test_nodes_shorthand_expands_to_every_forward_edge():
    circuit = compile_circuit("c", _spec(nodes=["embed", "0.1", "1.0", "logits"]), SHAPE)
    want = {"embed -> 0.1.q", "embed -> 0.1.k", "embed -> 0.1.v", "embed -> 1.0.q", "embed -> 1.0.k",
            "embed -> 1.0.v", "0.1 -> 1.0.q", "0.1 -> 1.0.k", "0.1 -> 1.0.v", "embed -> logits",
            "0.1 -> logits", "1.0 -> logits"}
    assert {str(e) for e in circuit.edges} == want
    assert len(circuit.removed) == len(SHAPE.all_edges()) - len(want)
    assert isinstance(circuit.graph, nx.DiGraph) and nx.is_directed_acyclic_graph(circuit.graph)
    assert circuit.graph.has_edge(HeadInput(Head(1, 0), "k"), Head(1, 0))  # an input feeds its head
    assert not circuit.warnings


def test_all_except_removes_exactly_those_edges():
    circuit = compile_circuit("c", _spec(edges={"all_except": ["0.0 -> logits", "embed -> 1.2.v"]}), SHAPE)
    assert [str(e) for e in circuit.removed] == ["embed -> 1.2.v", "0.0 -> logits"]
    assert len(circuit.edges) == circuit.n_model_edges - 2


@pytest.mark.parametrize(
    ("edges", "shape", "message"),
    [
        (["2.0 -> logits"], SHAPE, "layer 2 of '2.0' is out of range: the model has 2 layer"),
        (["0.3 -> logits"], SHAPE, "head 3 of '0.3' is out of range: layer 0 has 3 head"),
        (["mlp0 -> logits"], ModelShape(2, 3, False, True), "the model is attention-only: it has no 'mlp0'"),
        (["pos_embed -> logits"], ModelShape(2, 3, True, False), "no positional embedding"),
    ],
)
def test_nodes_the_model_lacks(edges, shape, message):
    _, errors = compile_circuits({"c": _spec(edges=edges)}, shape)
    assert [e.path for e in errors] == [("circuits", "c", "edges", 0)]
    assert message in errors[0].message and errors[0].fix


def test_all_except_that_leaves_nothing_into_logits_is_an_error():
    into_logits = [str(e) for e in SHAPE.all_edges() if isinstance(e.receiver, Logits)]
    _, errors = compile_circuits({"c": _spec(edges={"all_except": into_logits})}, SHAPE)
    assert "never reaches logits on this model" in errors[0].message


def test_dangling_nodes_are_warnings_with_their_edge():
    # 0.0 reads nothing in the circuit; mlp0 reaches no logits
    circuit = compile_circuit("c", _spec(edges=["embed -> logits", "0.0 -> logits", "embed -> mlp0"]), SHAPE)
    messages = [(w.path, w.message) for w in circuit.warnings]
    assert (("circuits", "c", "edges", 1), "circuit 'c': 0.0 has no path from embed or pos_embed in the circuit, "
            "so it computes from ablated inputs only") in messages
    assert (("circuits", "c", "edges", 2), "circuit 'c': mlp0 has no path to logits in the circuit, "
            "so its edges change nothing the metric sees") in messages
    assert len(messages) == 2
    lines = describe_circuit(circuit, SourceMap("f.yaml", {("circuits", "c", "edges", 2): _loc(7, 3)}, {}))
    assert lines[0] == f"3 of the model's {circuit.n_model_edges} edges kept:"
    assert "warning: f.yaml:7:3: circuit 'c': mlp0 has no path to logits" in "\n".join(lines)


def _loc(line: int, col: int):
    from circuitcheck.errors import SourceLocation

    return SourceLocation("f.yaml", line, col)


@settings(max_examples=50, deadline=None)
@given(
    n_layers=st.integers(1, 3), n_heads=st.integers(1, 3), mlps=st.booleans(), data=st.data(),
)
def test_any_node_set_with_logits_compiles_to_forward_edges(n_layers, n_heads, mlps, data):
    shape = ModelShape(n_layers, n_heads, mlps, True)
    chosen = [*data.draw(st.lists(st.sampled_from(shape.senders()), min_size=1, unique=True)), Logits()]
    circuit = compile_circuit("c", _spec(nodes=[str(n) for n in chosen]), shape)
    assert set(circuit.edges) == set(expand_nodes(chosen)) <= set(shape.all_edges())
    assert set(circuit.edges) | set(circuit.removed) == set(shape.all_edges())
    assert nx.is_directed_acyclic_graph(circuit.graph)


# ---- explain ------------------------------------------------------------------------------------------


def test_explain_prints_each_circuit(write_yaml, capsys):
    path = write_yaml(HEADER + '  c:\n    edges: ["0.0 -> logits", "embed -> 0.0.k"]\n')
    assert main(["explain", str(path)]) == 0
    out = capsys.readouterr().out
    # the trigram model: 1 layer, 1 head, an MLP, pos_embed: 13 edges
    assert "circuit c: 2 of the model's 13 edges kept:" in out
    assert "11 edge(s) removed:" in out and "    mlp0 -> logits" in out
    assert "0.0 has no path from embed or pos_embed" not in out  # embed -> 0.0.k feeds it


def test_compile_errors_are_pinned_before_any_forward_pass(write_yaml, capsys):
    path = write_yaml(HEADER + '  c:\n    edges: ["0.0 -> logits", "0.3 -> logits"]\n')
    assert main(["explain", str(path)]) == 2
    err = capsys.readouterr().err
    assert ":11:30: circuits.c.edges.1: head 3 of '0.3' is out of range: layer 0 has 1 head(s)" in err
