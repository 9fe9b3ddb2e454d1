"""A model's senders, receivers and reading points, indexed for the edge engine (:mod:`circuitcheck.run.edges`).

A reading point is where a set of receivers reads the residual stream; every receiver of a point reads the
same senders from the same stream, in forward order::

    heads L    the q / k / v inputs of layer L's heads   blocks.L.hook_resid_pre (ln1's input)
    mlp L      mlpL                                      blocks.L.ln2.hook_in: resid_mid, or in parallel
                                                         blocks (GPT-NeoX, GPT-J) the block's input
    logits     the final readout                         ln_final.hook_in

``blocks.L.ln2.hook_in`` is the input of ln2 only: replacing it leaves the residual stream its own sum
(``hook_resid_mid`` is the same hook point on the native block and GPT-2).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch

from circuitcheck.plan.circuits import ModelShape
from circuitcheck.spec.circuits import Edge, EdgeReceiver, Sender, order
from circuitcheck.spec.components import Embed, Head, HeadInput, Logits, Mlp, PosEmbed

__all__ = ["EdgeLayout", "ReadingPoint", "sender_hook"]


def sender_hook(sender: Sender) -> str:
    """The hook a sender's output is read at (a head's is ``hook_z``, times its ``W_O``)."""
    if isinstance(sender, Embed):
        return "hook_embed"
    if isinstance(sender, PosEmbed):
        return "hook_pos_embed"
    if isinstance(sender, Head):
        return f"blocks.{sender.layer}.attn.hook_z"
    return f"blocks.{sender.layer}.hook_mlp_out"


@dataclass(frozen=True)
class ReadingPoint:
    """Receivers that read the same senders from the same residual stream (module docstring)."""

    kind: Literal["heads", "mlp", "logits"]
    layer: int
    """The block whose input the point reads, or ``n_layers`` for logits: a pass that changes nothing
    before this point can start there."""
    order: float
    """:func:`circuitcheck.spec.circuits.order` of its receivers: a sender of lower order computes before it."""
    columns: tuple[int, ...]
    """Its receivers' indices (heads: q of every head, then k, then v)."""
    upstream: tuple[int, ...]
    """The indices of the senders it reads."""

    @property
    def stream_hook(self) -> str:
        """Where the point's residual stream is read in a pass (its receivers' input when nothing is cut)."""
        if self.kind == "heads":
            return f"blocks.{self.layer}.hook_resid_pre"
        return f"blocks.{self.layer}.ln2.hook_in" if self.kind == "mlp" else "ln_final.hook_in"


class EdgeLayout:
    """A model's senders and receivers, indexed; turns circuits into keep masks ``[variants, S, R]``."""

    def __init__(self, shape: ModelShape) -> None:
        self.shape = shape
        self.senders = shape.senders()
        self.receivers = shape.receivers()
        self.sender_index = {s: i for i, s in enumerate(self.senders)}
        self.receiver_index = {r: i for i, r in enumerate(self.receivers)}
        self.sender_order = [order(s) for s in self.senders]
        self.full = torch.tensor(
            [[float(shape.reads(s, r)) for r in self.receivers] for s in self.senders]
        ).reshape(len(self.senders), len(self.receivers))
        """``[S, R]``: 1.0 where the model's receiver reads the sender (the full graph's keep mask)."""
        self.points = self._points()
        self._cell: dict[Edge, int] | None = None

    def _points(self) -> list[ReadingPoint]:
        found: list[ReadingPoint] = []
        for layer in range(self.shape.n_layers):
            heads = [HeadInput(Head(layer, h), x) for x in ("q", "k", "v") for h in range(self.shape.n_heads)]
            found.append(self._point("heads", layer, heads))
            if self.shape.has_mlps:
                found.append(self._point("mlp", layer, [Mlp(layer)]))
        return [*found, self._point("logits", self.shape.n_layers, [Logits()])]

    def _point(self, kind: Literal["heads", "mlp", "logits"], layer: int, receivers: Sequence[EdgeReceiver],
               ) -> ReadingPoint:
        columns = tuple(self.receiver_index[r] for r in receivers)
        return ReadingPoint(kind, layer, order(receivers[0]), columns, tuple(self.upstream(receivers[0])))

    def all_edges(self) -> list[Edge]:
        return self.shape.all_edges()

    def keep(self, circuits: Sequence[Iterable[Edge]]) -> torch.Tensor:
        """``[len(circuits), S, R]``: 1.0 where the circuit keeps the edge ``sender -> receiver``."""
        cell = self._cells()
        # Circuits share their Edge objects (each minimality candidate is the full list less one), and
        # hashing an Edge hashes its nested components: look each object up once, then by identity.
        # ``alive`` keeps every object looked up alive, so no other object can take its id in this call.
        by_id: dict[int, int] = {}
        alive: list[Edge] = []
        flat: list[int] = []
        size = len(self.senders) * len(self.receivers)
        for v, circuit in enumerate(circuits):
            edges = list(circuit)
            try:
                flat += [v * size + by_id[i] for i in map(id, edges)]
                continue
            except KeyError:
                pass
            for edge in edges:
                at = cell.get(edge)
                if at is None:
                    raise ValueError(f"edge '{edge}' is not an edge of this model; compile the circuit first")
                by_id[id(edge)] = at
            alive += edges
            flat += [v * size + by_id[i] for i in map(id, edges)]
        mask = torch.zeros(len(circuits) * size)
        mask[torch.tensor(flat, dtype=torch.long)] = 1.0
        return mask.view(len(circuits), len(self.senders), len(self.receivers))

    def _cells(self) -> dict[Edge, int]:
        """Each edge of the model's position ``s * R + r`` in a flattened ``[S, R]`` mask."""
        if self._cell is None:
            n_r = len(self.receivers)
            self._cell = {e: self.sender_index[e.sender] * n_r + self.receiver_index[e.receiver]
                          for e in self.all_edges()}
        return self._cell

    def upstream(self, receiver: EdgeReceiver) -> list[int]:
        """Indices of the senders ``receiver`` reads."""
        return [i for i, s in enumerate(self.senders) if self.shape.reads(s, receiver)]

    def sender_hooks(self) -> list[str]:
        return list(dict.fromkeys(sender_hook(s) for s in self.senders))
