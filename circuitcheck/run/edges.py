"""Edge-level interventions: run circuits (sets of edges ``sender -> receiver``), many at once.

Running a circuit means: every receiver's input is the sum of

- the outputs, in this run, of the senders whose edges into it are in the circuit,
- the ablated outputs (zero, mean or resample of the clean run's, or a corrupted run's) of the
  senders whose edges are not,
- the biases no sender owns (each attention layer's ``b_O``), always kept;

and the receiver is recomputed from that input, norms included (as path patching does,
:mod:`circuitcheck.run.paths`). Sender outputs: ``hook_embed``, ``hook_pos_embed``, each head's
``z @ W_O`` and ``hook_mlp_out``. Receivers and where their input goes in:

    L.H.q / .k / .v   blocks.L.attn.hook_q / hook_k / hook_v, replaced by ln1(input_H) @ W_Q[L, H] + b_Q[L, H]
    mlpL              blocks.L.hook_resid_mid, the input of ln2 and the MLP only (the residual stream keeps its own)
    logits            ln_final.hook_in

(TransformerLens's split ``hook_q_input`` / ``hook_k_input`` / ``hook_v_input`` need
``use_split_qkv_input``, which the bridge refuses for its ``AttentionBridge``, and ``hook_mlp_in``
needs a model-wide flag; the hooks above fire on every bridge without changing the model.)

Batched: one variant per circuit, stacked along the batch as the engine stacks variants (block ``v``
= rows ``[v * c, (v + 1) * c)``). In a pass, sender hooks record each variant's change
``output - ablated`` in ``D [senders, variants, c, seq, d_model]``; a receiver's input for variant
``v`` is ``base + sum_s keep[v, s, r] * D[s, v]``, where ``base`` is the receiver's biases plus every
upstream sender's ablated output. Memory grows with ``max_rows * senders * seq * d_model``; each call's
logits go to a sink (:mod:`circuitcheck.run.readouts`) before the next call starts.
Every hook is counted and must fire.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast

import torch

from circuitcheck.errors import SelfCheckError
from circuitcheck.plan.circuits import ModelShape
from circuitcheck.run.engine import DEFAULT_MAX_ROWS, assert_fired, clean_run, counted_hooks, derangement
from circuitcheck.run.heap import release_freed_memory
from circuitcheck.run.readouts import Collector, LogitSink
from circuitcheck.spec.circuits import Edge, EdgeReceiver, Sender, order, reads_from
from circuitcheck.spec.components import Embed, Head, HeadInput, Logits, Mlp, PosEmbed

__all__ = ["EdgeAblation", "EdgeLayout", "check_full_circuit", "run_circuits", "sender_outputs"]

FULL_CIRCUIT_ATOL = 1e-5
"""How far the full circuit's logits may be from the model's, per unit of the largest |logit| (at least 1):
float32 sums in another order err in proportion to the values summed (caesar-easy: 3.3e-5 at logits of ~21)."""


@dataclass(frozen=True)
class EdgeAblation:
    """What a removed edge carries: ``zero``, ``mean`` (over sequences, per position) or ``resample``
    (another sequence's, a seeded derangement) of the clean run's sender output, or ``corrupted``:
    the sender's output in a run on ``corrupted`` tokens (patching-style circuits)."""

    method: Literal["zero", "mean", "resample", "corrupted"]
    seed: int | None = None
    corrupted: torch.Tensor | None = None


def _hook_of(sender: Sender) -> str:
    if isinstance(sender, Embed):
        return "hook_embed"
    if isinstance(sender, PosEmbed):
        return "hook_pos_embed"
    if isinstance(sender, Head):
        return f"blocks.{sender.layer}.attn.hook_z"
    return f"blocks.{sender.layer}.hook_mlp_out"


class EdgeLayout:
    """A model's senders and receivers, indexed; turns circuits into keep masks ``[variants, S, R]``."""

    def __init__(self, shape: ModelShape) -> None:
        self.shape = shape
        self.senders = shape.senders()
        self.receivers = shape.receivers()
        self.sender_index = {s: i for i, s in enumerate(self.senders)}
        self.receiver_index = {r: i for i, r in enumerate(self.receivers)}

    def all_edges(self) -> list[Edge]:
        return self.shape.all_edges()

    def keep(self, circuits: Sequence[Iterable[Edge]]) -> torch.Tensor:
        """``[len(circuits), S, R]``: 1.0 where the circuit keeps the edge ``sender -> receiver``."""
        mask = torch.zeros(len(circuits), len(self.senders), len(self.receivers))
        for v, edges in enumerate(circuits):
            for edge in edges:
                s, r = self.sender_index.get(edge.sender), self.receiver_index.get(edge.receiver)
                if s is None or r is None or not reads_from(edge.sender, edge.receiver):
                    raise ValueError(f"edge '{edge}' is not an edge of this model; compile the circuit first")
                mask[v, s, r] = 1.0
        return mask

    def upstream(self, receiver: EdgeReceiver) -> list[int]:
        """Indices of the senders ``receiver`` reads."""
        return [i for i, s in enumerate(self.senders) if reads_from(s, receiver)]

    def sender_hooks(self) -> list[str]:
        return list(dict.fromkeys(_hook_of(s) for s in self.senders))


def sender_outputs(model: Any, layout: EdgeLayout, acts: dict[str, torch.Tensor]) -> torch.Tensor:
    """Each sender's output ``[S, n, seq, d_model]`` from a run's activations at the sender hooks."""
    out: list[torch.Tensor] = []
    for sender in layout.senders:
        act = acts[_hook_of(sender)]
        if isinstance(sender, Head):
            out.append(act[:, :, sender.head] @ model.W_O[sender.layer, sender.head])
        else:
            out.append(act.expand(len(acts["hook_embed"]), *act.shape[-2:]))
    return torch.stack(out)


def _ablated(model: Any, layout: EdgeLayout, tokens: torch.Tensor, ablation: EdgeAblation, max_rows: int,
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """(the clean logits, the ablated output ``[S, n, seq, d_model]`` of every sender)."""
    hooks = set(layout.sender_hooks())
    logits, cache = clean_run(model, tokens, hooks, max_rows)
    clean = sender_outputs(model, layout, cache)
    if ablation.method == "zero":
        return logits, torch.zeros_like(clean)
    if ablation.method == "mean":
        return logits, clean.mean(1, keepdim=True).expand_as(clean).contiguous()
    if ablation.method == "resample":
        if ablation.seed is None:
            raise ValueError("resample ablation needs a seed")
        return logits, clean[:, derangement(clean.shape[1], ablation.seed)]
    if ablation.corrupted is None or ablation.corrupted.shape != tokens.shape:
        raise ValueError("corrupted ablation needs corrupted tokens of the clean tokens' shape")
    _, corrupted = clean_run(model, ablation.corrupted, hooks, max_rows)
    return logits, sender_outputs(model, layout, corrupted)


def _bias_before(model: Any, receiver: EdgeReceiver) -> torch.Tensor:
    """The attention output biases every sender of ``receiver`` is added with (no sender owns them)."""
    layers = [layer for layer in range(int(model.cfg.n_layers)) if order(Head(layer, 0)) < order(receiver)]
    if not layers:
        return torch.zeros(())
    return model.b_O[layers].sum(0)


@dataclass
class _Prepared:
    """What every pass reads: per reading point, the base input ``[n, seq, d]`` and upstream senders."""

    layout: EdgeLayout
    base: dict[EdgeReceiver, torch.Tensor]
    upstream: dict[EdgeReceiver, list[int]]
    ablated: torch.Tensor


def _prepare(model: Any, layout: EdgeLayout, ablated: torch.Tensor) -> _Prepared:
    points: list[EdgeReceiver] = []
    for layer in range(layout.shape.n_layers):
        points.append(HeadInput(Head(layer, 0), "q"))  # every head input of a layer reads the same senders
        points += [Mlp(layer)] if layout.shape.has_mlps else []
    points.append(Logits())
    base, upstream = {}, {}
    for point in points:
        up = layout.upstream(point)
        upstream[point] = up
        base[point] = ablated[up].sum(0) + _bias_before(model, point)
    return _Prepared(layout, base, upstream, ablated)


def _edge_hooks(
    model: Any, prep: _Prepared, keep: torch.Tensor, seqs: torch.Tensor
) -> dict[str, Callable[[torch.Tensor], Any]]:
    """The hook functions of one stacked pass of ``len(keep)`` variants over the sequences ``seqs``."""
    layout, n_var, c = prep.layout, len(keep), len(seqs)
    deltas: dict[int, torch.Tensor] = {}  # sender index -> [V, c, seq, d]
    abl = prep.ablated[:, seqs]  # [S, c, seq, d]
    hooks: dict[str, Callable[[torch.Tensor], Any]] = {}

    def record(indices: list[int], heads: int | None) -> Callable[[torch.Tensor], None]:
        def save(act: torch.Tensor) -> None:
            if heads is None:
                out = act.expand(n_var * c, *act.shape[-2:]).reshape(n_var, c, *act.shape[-2:])
                deltas[indices[0]] = out - abl[indices[0]]
                return
            layer = layout.senders[indices[0]]
            assert isinstance(layer, Head), "head senders"
            per_head = torch.einsum("bphe,hed->hbpd", act, model.W_O[layer.layer])
            for h, i in enumerate(indices):
                deltas[i] = per_head[h].reshape(n_var, c, *per_head.shape[-2:]) - abl[i]

        return save

    def receiver_input(point: EdgeReceiver, columns: list[int]) -> torch.Tensor:
        """``[V, c, seq, len(columns), d]``: the input of the receivers ``columns`` (indices into receivers)."""
        up = prep.upstream[point]
        stacked = torch.stack([deltas[s] for s in up])  # [S_up, V, c, seq, d]
        sel = keep[:, up][:, :, columns]  # [V, S_up, R_sel]
        return prep.base[point][seqs][None, :, :, None] + torch.einsum("vsr,svcpd->vcprd", sel, stacked)

    def head_input(layer: int, which: str) -> Callable[[torch.Tensor], torch.Tensor]:
        qkv = cast(Literal["q", "k", "v"], which)
        columns = [layout.receiver_index[HeadInput(Head(layer, h), qkv)] for h in range(layout.shape.n_heads)]
        block = model.blocks[layer]
        w, b = getattr(model, f"W_{which.upper()}")[layer], getattr(model, f"b_{which.upper()}")[layer]

        def replace(act: torch.Tensor) -> torch.Tensor:
            x = receiver_input(HeadInput(Head(layer, 0), "q"), columns)  # [V, c, seq, H, d]
            normed = block.ln1(x.reshape(n_var * c, -1, x.shape[-1])).reshape(n_var * c, *x.shape[2:])
            return torch.einsum("bphd,hde->bphe", normed, w) + b

        return replace

    def single_input(point: EdgeReceiver) -> Callable[[torch.Tensor], torch.Tensor]:
        columns = [layout.receiver_index[point]]

        def replace(act: torch.Tensor) -> torch.Tensor:
            return receiver_input(point, columns)[:, :, :, 0].reshape(act.shape)

        return replace

    for sender_hook in layout.sender_hooks():
        indices = [i for i, s in enumerate(layout.senders) if _hook_of(s) == sender_hook]
        hooks[sender_hook] = record(indices, layout.shape.n_heads if sender_hook.endswith("hook_z") else None)
    for layer in range(layout.shape.n_layers):
        for which in ("q", "k", "v"):
            hooks[f"blocks.{layer}.attn.hook_{which}"] = head_input(layer, which)
        if layout.shape.has_mlps:
            hooks[f"blocks.{layer}.hook_resid_mid"] = single_input(Mlp(layer))
    hooks["ln_final.hook_in"] = single_input(Logits())
    return hooks


def run_circuits(
    model: Any,
    tokens: torch.Tensor,
    circuits: Sequence[Iterable[Edge]],
    ablation: EdgeAblation,
    *,
    max_rows: int = DEFAULT_MAX_ROWS,
    sink: LogitSink | None = None,
    keys: Sequence[Hashable] | None = None,
) -> list[torch.Tensor]:
    """Logits ``[n, seq, vocab]`` of ``model`` on ``tokens`` for each circuit (an iterable of edges,
    e.g. :attr:`circuitcheck.plan.circuits.CompiledCircuit.edges`), removed edges carrying ``ablation``.
    With ``sink``, circuit ``i``'s logits go to it chunk by chunk as run ``keys[i]`` (default ``i``),
    and nothing is returned.

    One variant per circuit, stacked into passes of at most ``max_rows`` rows (module docstring)."""
    if not circuits:
        return []
    layout = EdgeLayout(ModelShape.of(model))
    keep_all = layout.keep(circuits)
    names: list[Hashable] = list(keys) if keys is not None else list(range(len(circuits)))
    collector = Collector(len(tokens), _no_inputs) if sink is None else None
    target = collector if collector is not None else sink
    assert target is not None
    with torch.no_grad():
        _, ablated = _ablated(model, layout, tokens, ablation, max_rows)
        prep = _prepare(model, layout, ablated)
        for first in range(0, len(circuits), max_rows):
            keep = keep_all[first : first + max_rows]
            part = names[first : first + max_rows]

            def emit(block: int, seq: int, logits: torch.Tensor, part: list[Hashable] = part) -> None:
                target.chunk(part[block], seq, logits)

            _run_pass(model, prep, keep, tokens, max_rows, emit)
    return [] if collector is None else [collector.outputs[k] for k in names]


def _no_inputs(name: str) -> torch.Tensor:
    raise AssertionError("edge runs read no input's unedited logits")


def _run_pass(
    model: Any, prep: _Prepared, keep: torch.Tensor, tokens: torch.Tensor, max_rows: int,
    emit: Callable[[int, int, torch.Tensor], None],
) -> None:
    """The ``V = len(keep)`` variants, chunked over sequences; each call's logits go out per variant,
    ``emit(variant, first sequence, logits [c, seq, vocab])``."""
    n_var, n = len(keep), len(tokens)
    per_call = max(1, max_rows // n_var)
    for first in range(0, n, per_call):
        seqs = torch.arange(first, min(first + per_call, n))
        hooks = _edge_hooks(model, prep, keep, seqs)
        with counted_hooks(model, hooks) as calls:
            logits = model(tokens[seqs].repeat(n_var, 1)).detach()
        assert_fired(calls, sorted(hooks), "edge run")
        view = logits.view(n_var, len(seqs), *logits.shape[1:])
        for v in range(n_var):
            emit(v, first, view[v])
        del logits, view, hooks
    release_freed_memory()


def check_full_circuit(
    model: Any, tokens: torch.Tensor, ablation: EdgeAblation, *, max_rows: int = DEFAULT_MAX_ROWS,
    atol: float = FULL_CIRCUIT_ATOL, clean_logits: torch.Tensor | None = None,
) -> float:
    """The self-check: the circuit of every edge reproduces the model; returns the max |difference|,
    raises :class:`SelfCheckError` past ``atol`` times the largest |logit| (at least 1). Pass the model's
    ``clean_logits`` when the caller has them, so the check costs no second clean pass."""
    layout = EdgeLayout(ModelShape.of(model))
    (full,) = run_circuits(model, tokens, [layout.all_edges()], ablation, max_rows=max_rows)
    if clean_logits is None:
        with torch.no_grad():
            clean_logits = model(tokens)
    want = clean_logits
    diff = float((full - want).abs().max())
    tolerance = atol * max(1.0, float(want.abs().max()))
    if diff > tolerance:
        raise SelfCheckError(
            f"the full circuit ({len(layout.all_edges())} edges) does not reproduce the model: "
            f"max |logit difference| {diff:.2e} > {tolerance:.2g} ({atol:g} x the largest |logit|); "
            "edge-level results on this model are invalid"
        )
    return diff
