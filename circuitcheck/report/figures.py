"""Figures drawn from a run's captured activations, for the HTML report.

A claim that captures an attention pattern (``blocks.L.attn.hook_pattern``) gets, per head,
the mean pattern over every sequence of the dataset and the pattern of one example sequence
(the one with the most annotated positions, whose roles label the rows).

Each circuit of the file is drawn as a graph (:mod:`circuitcheck.report.circuit_svg`); a minimality
claim gets its circuit again, each edge coloured by its drop and its redundant edges marked.
"""

from __future__ import annotations

from typing import Any

import torch

from circuitcheck.plan.circuits import CompiledCircuit
from circuitcheck.report.circuit_svg import CircuitDrawing, DrawnEdge
from circuitcheck.report.svg import Heatmap
from circuitcheck.report.text import num
from circuitcheck.run.execute import FileResult
from circuitcheck.spec.components import Embed, Head, HeadInput, Logits, Mlp, PosEmbed

MAX_HEADS = 4
"""Heads drawn per captured pattern; larger models show the first ones."""

Figure = Heatmap | CircuitDrawing
Figures = dict[str, list[Figure]]
"""Claim id -> its figures (heatmaps, circuits)."""


def example_sequence(roles: torch.Tensor, candidates: int = 100) -> int:
    """Among the first ``candidates`` sequences, the one with the most annotated positions."""
    counts = (roles[:candidates] != 0).sum(1)
    return int(counts.argmax()) if len(counts) else 0


def _rows(matrix: torch.Tensor) -> list[list[float]]:
    return [[round(float(v), 4) for v in row] for row in matrix]


def attention_figures(result: FileResult) -> Figures:
    batch = result.plan.batch
    seq = example_sequence(batch.roles)
    marks = {p: batch.role_names[int(code)] for p, code in enumerate(batch.roles[seq].tolist()) if code}
    figures: Figures = {}
    for claim in result.plan.claims:
        drawn = claim.captures | claim.figure_captures
        for hook in sorted(h for h in drawn if h.endswith("hook_pattern") and h in result.captured):
            pattern = result.captured[hook]
            layer = hook.split(".")[1]
            for head in range(min(int(pattern.shape[1]), MAX_HEADS)):
                mean = pattern[:, head].double().mean(0)
                figures.setdefault(claim.claim_id, []).extend([
                    Heatmap(f"head {layer}.{head}: mean over {len(pattern)} sequences", _rows(mean)),
                    Heatmap(f"head {layer}.{head}: sequence {seq}, rows by role", _rows(pattern[seq, head]), marks),
                ])
    return figures


def _row(node: Any, n_layers: int) -> int:
    if isinstance(node, Embed | PosEmbed):
        return 0
    return n_layers + 1 if isinstance(node, Logits) else int(node.layer) + 1


def _in_row(node: Any) -> tuple[bool, int, str]:
    return isinstance(node, Mlp), getattr(node, "head", 0), str(node)


def circuit_drawing(
    title: str, circuit: CompiledCircuit, per_edge: list[dict[str, Any]] | None = None
) -> CircuitDrawing:
    """``circuit`` on its model; ``per_edge`` (a minimality claim's ``details["edges"]``) colours its edges."""
    kept = set(circuit.edges)
    numbers = {str(row["edge"]): row for row in per_edge or []}
    everything = sorted([*circuit.edges, *circuit.removed], key=lambda e: str(e))
    nodes = {e.sender for e in everything} | {
        e.receiver.head if isinstance(e.receiver, HeadInput) else e.receiver for e in everything
    }
    n_layers = max((int(n.layer) for n in nodes if hasattr(n, "layer")), default=-1) + 1
    rows = [sorted((n for n in nodes if _row(n, n_layers) == i), key=_in_row)
            for i in range(n_layers + 2)]
    drawn = []
    for e in everything:
        row = numbers.get(str(e), {})
        receiver = e.receiver.head if isinstance(e.receiver, HeadInput) else e.receiver
        drop = row.get("drop")
        note = str(e) if not row else (
            f"{e}: {'necessary' if row.get('necessary') else 'redundant'}, drop {num(drop)} "
            f"[{num(row.get('ci_low'))}, {num(row.get('ci_high'))}], Holm p {num(row.get('p_holm'))}"
        )
        drawn.append(DrawnEdge(
            str(e), str(e.sender), str(receiver), e.receiver.input if isinstance(e.receiver, HeadInput) else None,
            e in kept, drop if isinstance(drop, float) else None, bool(row) and not row.get("necessary"), note,
        ))
    heads = frozenset(str(n) for n in nodes if isinstance(n, Head))
    return CircuitDrawing(title, tuple(tuple(str(n) for n in r) for r in rows if r), tuple(drawn), heads)


def circuit_figures(result: FileResult, doc: dict[str, Any]) -> tuple[list[CircuitDrawing], Figures]:
    """Every circuit of the file, and a figure per minimality claim (claim id -> [its circuit, with drops])."""
    circuits = result.plan.circuits
    drawings = [
        circuit_drawing(f"circuit {name}: {len(c.edges)} of {c.n_model_edges} edges", c) for name, c in circuits.items()
    ]
    named = {c.id: getattr(c, "circuit", None) for c in result.plan.spec.claims}
    figures: Figures = {}
    for claim in doc["claims"]:
        per_edge = claim["details"].get("edges")
        circuit = circuits.get(named.get(claim["id"]) or "")
        if claim["kind"] == "minimality" and isinstance(per_edge, list) and circuit is not None:
            title = f"{claim['id']}: circuit {circuit.name}, edges coloured by drop"
            figures[claim["id"]] = [circuit_drawing(title, circuit, per_edge)]
    return drawings, figures
