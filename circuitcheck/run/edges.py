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
    mlpL              blocks.L.ln2.hook_in, the input of ln2 and the MLP only (the residual stream keeps its own)
    logits            ln_final.hook_in

(TransformerLens's split ``hook_q_input`` / ``hook_k_input`` / ``hook_v_input`` need
``use_split_qkv_input``, which the bridge refuses for its ``AttentionBridge``, and ``hook_mlp_in``
needs a model-wide flag; the hooks above fire on every bridge without changing the model.) In parallel
blocks (``parallel_attn_mlp``: GPT-NeoX/Pythia, GPT-J) mlpL reads the block's input, so it reads no
head of its own layer (:meth:`circuitcheck.plan.circuits.ModelShape.reads`).

Batched: one variant per circuit, stacked along the batch as the engine stacks variants (block ``v``
= rows ``[v * c, (v + 1) * c)``). Variants are grouped by the first reading point their circuit
changes (:mod:`circuitcheck.run.edge_layout`): before it every activation is clean, so a group's
passes start from the clean run's residual stream at that point's layer (``Start.LAYER`` of
:mod:`circuitcheck.run.resume`; on blocks other than TransformerLens's native one, from the tokens), in
forward order of the points. A minimality variant (the full graph less one edge ``s -> r``) starts at
``r``'s layer and changes one input, by one term (:mod:`circuitcheck.run.edge_pass`). The full circuit
runs from the tokens, recomputing every receiver's input from its senders: it is the self-check
(:func:`check_full_circuit`). Memory grows with ``max_rows`` (each pass holds at most ``max_rows``
rows and, per changed receiver input, one ``[max_rows, seq, d_model]``), not with the number of
circuits; each call's logits go to a sink (:mod:`circuitcheck.run.readouts`) before the next call
starts. Every hook is counted and must fire.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch

from circuitcheck.errors import CircuitcheckError, SelfCheckError
from circuitcheck.plan.circuits import ModelShape
from circuitcheck.run.edge_layout import EdgeLayout, ReadingPoint, sender_hook
from circuitcheck.run.edge_pass import EdgeValues, PassPlan, edge_hooks, plan_pass
from circuitcheck.run.engine import DEFAULT_MAX_ROWS, assert_fired, clean_run, counted_hooks, derangement
from circuitcheck.run.heap import release_freed_memory
from circuitcheck.run.readouts import Collector, LogitSink
from circuitcheck.run.resume import forward_from, resume_hook, starts_inside_blocks
from circuitcheck.spec.circuits import Edge
from circuitcheck.spec.components import Head

__all__ = [
    "EdgeAblation", "EdgeLayout", "UnsupportedModelError", "check_full_circuit", "check_supported", "run_circuits",
    "sender_outputs",
]

FULL_CIRCUIT_ATOL = 1e-5
"""How far the full circuit's logits may be from the model's, per unit of the largest |logit| (at least 1):
float32 sums in another order err in proportion to the values summed (caesar-easy: 3.3e-5 at logits of ~21)."""


class UnsupportedModelError(CircuitcheckError):
    """A model whose architecture the edge engine cannot intervene on (:func:`check_supported`)."""


@dataclass(frozen=True)
class EdgeAblation:
    """What a removed edge carries: ``zero``, ``mean`` (over sequences, per position) or ``resample``
    (another sequence's, a seeded derangement) of the clean run's sender output, or ``corrupted``:
    the sender's output in a run on ``corrupted`` tokens (patching-style circuits)."""

    method: Literal["zero", "mean", "resample", "corrupted"]
    seed: int | None = None
    corrupted: torch.Tensor | None = None


def sender_outputs(model: Any, layout: EdgeLayout, acts: dict[str, torch.Tensor]) -> torch.Tensor:
    """Each sender's output ``[S, n, seq, d_model]`` from a run's activations at the sender hooks."""
    out: list[torch.Tensor] = []
    for sender in layout.senders:
        act = acts[sender_hook(sender)]
        if isinstance(sender, Head):
            out.append(act[:, :, sender.head] @ model.W_O[sender.layer, sender.head])
        else:
            out.append(act.expand(len(acts["hook_embed"]), *act.shape[-2:]))
    return torch.stack(out)


def _ablate(clean: torch.Tensor, model: Any, layout: EdgeLayout, ablation: EdgeAblation, tokens: torch.Tensor,
            max_rows: int) -> torch.Tensor:
    """The ablated output ``[S, n, seq, d_model]`` of every sender, from their clean outputs (zero and mean:
    a view of one sequence's worth, so that a run holds one whole ``[S, n, seq, d_model]``, the clean ``D``)."""
    if ablation.method == "zero":
        return torch.zeros_like(clean[:, :1]).expand_as(clean)
    if ablation.method == "mean":
        return clean.mean(1, keepdim=True).expand_as(clean)
    if ablation.method == "resample":
        if ablation.seed is None:
            raise ValueError("resample ablation needs a seed")
        return clean[:, derangement(clean.shape[1], ablation.seed)]
    if ablation.corrupted is None or ablation.corrupted.shape != tokens.shape:
        raise ValueError("corrupted ablation needs corrupted tokens of the clean tokens' shape")
    _, corrupted = clean_run(model, ablation.corrupted, set(layout.sender_hooks()), max_rows)
    return sender_outputs(model, layout, corrupted)


def _bias_before(model: Any, layout: EdgeLayout, point: ReadingPoint) -> torch.Tensor:
    """The attention output biases of the layers whose heads ``point`` reads (no sender owns them)."""
    layers = sorted({s.layer for s in (layout.senders[i] for i in point.upstream) if isinstance(s, Head)})
    try:
        b_o = model.b_O
    except AttributeError:  # the bridge's answer for a bias-free output projection (GPT-J, Llama)
        return torch.zeros(())
    return b_o[layers].sum(0) if layers else torch.zeros(())


def check_supported(model: Any, layout: EdgeLayout) -> None:
    """Refuse, before any forward pass, a model whose blocks lack a hook the engine reads or replaces
    (GPT-J: one norm shared by attention and the MLP, so no ``ln2`` where an MLP's input could go in)."""
    needed = [*layout.sender_hooks(), *(p.stream_hook for p in layout.points)]
    needed += [f"blocks.{p.layer}.attn.hook_{x}" for p in layout.points if p.kind == "heads" for x in "qkv"]
    available = model.hook_dict
    missing = [h for h in needed if h not in available]
    if missing:
        raise UnsupportedModelError(
            f"edge-level circuits are not supported on this model's architecture: it has no hook {missing[0]!r}"
            f"{f' (and {len(missing) - 1} more)' if len(missing) > 1 else ''}, where the edge engine reads a sender "
            "or replaces a receiver's input (blocks with a separate ln1 and ln2 are supported: GPT-2, GPT-NeoX, "
            "TransformerLens's native models)\n  fix: test this model with node-level claims (ablation, "
            "patching), or run the circuit on a supported architecture"
        )


def _values(model: Any, layout: EdgeLayout, tokens: torch.Tensor, ablation: EdgeAblation, max_rows: int,
            start_layers: set[int]) -> EdgeValues:
    """One clean run (its sender outputs, and the residual streams passes start from), then the
    ablated outputs, the clean ``D``s and each reading point's base."""
    resumes = {layer: resume_hook(model, layer) for layer in start_layers}
    _, cache = clean_run(model, tokens, set(layout.sender_hooks()) | set(resumes.values()), max_rows)
    clean = sender_outputs(model, layout, cache)
    ablated = _ablate(clean, model, layout, ablation, tokens, max_rows)
    base = [ablated[list(p.upstream)].sum(0) + _bias_before(model, layout, p) for p in layout.points]
    weights = {name: getattr(model, name) for name in ("W_Q", "b_Q", "W_K", "b_K", "W_V", "b_V", "W_O")}
    resid = {layer: cache[hook] for layer, hook in resumes.items()}
    return EdgeValues(ablated, clean - ablated, base, resid, weights)


def first_changed_point(layout: EdgeLayout, keep: torch.Tensor) -> list[int]:
    """Per variant, the index of the first reading point whose input its circuit changes (0 for the
    full circuit, which runs from the tokens as the self-check)."""
    cut = (layout.full[None] - keep) != 0  # [V, S, R]
    column_point = torch.empty(len(layout.receivers), dtype=torch.long)
    for p, point in enumerate(layout.points):
        column_point[list(point.columns)] = p
    at = torch.where(cut.any(1), column_point, len(layout.points))  # [V, R]
    first = at.min(1).values
    return torch.where(first == len(layout.points), 0, first).tolist()


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

    One variant per circuit, grouped by where its pass can start and stacked into passes of at most
    ``max_rows`` rows (module docstring)."""
    if not circuits:
        return []
    layout = EdgeLayout(ModelShape.of(model))
    check_supported(model, layout)
    keep_all = layout.keep(circuits)
    names: list[Hashable] = list(keys) if keys is not None else list(range(len(circuits)))
    collector = Collector(len(tokens), _no_inputs) if sink is None else None
    target = collector if collector is not None else sink
    assert target is not None
    firsts = first_changed_point(layout, keep_all)
    resumable = starts_inside_blocks(model)  # forward_from mirrors TransformerLens's native blocks only
    # One pass per start layer (a layer's head and MLP variants share their pass: fewer, larger calls);
    # from the tokens, one per first changed point, which fixes the senders whose clean D a pass reads.
    groups: dict[int, list[int]] = defaultdict(list)
    for v, first in enumerate(firsts):
        groups[layout.points[first].layer if resumable else first].append(v)
    with torch.no_grad():
        values = _values(model, layout, tokens, ablation, max_rows, {k for k in groups if resumable and k > 0})
        for key, members in sorted(groups.items()):  # forward order: any order gives the same logits
            for at in range(0, len(members), max_rows):
                part = members[at : at + max_rows]
                plan = plan_pass(layout, keep_all[part], min(firsts[v] for v in part))

                def emit(block: int, seq: int, logits: torch.Tensor, part: list[int] = part) -> None:
                    target.chunk(names[part[block]], seq, logits)

                _run_pass(model, layout, values, plan, key if resumable else 0, tokens, max_rows, emit)
    return [] if collector is None else [collector.outputs[k] for k in names]


def _no_inputs(name: str) -> torch.Tensor:
    raise AssertionError("edge runs read no input's unedited logits")


def _run_pass(
    model: Any, layout: EdgeLayout, values: EdgeValues, plan: PassPlan, start: int, tokens: torch.Tensor,
    max_rows: int, emit: Callable[[int, int, torch.Tensor], None],
) -> None:
    """The pass's ``V`` variants, from layer ``start`` (0: the tokens), chunked over sequences; each
    call's logits go out per variant, ``emit(variant, first sequence, logits [c, seq, vocab])``."""
    n_var, n = plan.n_variants, len(tokens)
    per_call = max(1, max_rows // n_var)
    for first in range(0, n, per_call):
        seqs = torch.arange(first, min(first + per_call, n))
        hooks = edge_hooks(model, layout, plan, values, seqs)
        with counted_hooks(model, hooks) as calls:
            if start == 0:
                logits = model(tokens[seqs].repeat(n_var, 1))
            else:
                resid = values.resid[start][seqs]
                logits = forward_from(model, start, resid.repeat(n_var, *([1] * (resid.dim() - 1))))
        assert_fired(calls, sorted(hooks), "edge run")
        view = logits.detach().view(n_var, len(seqs), *logits.shape[1:])
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
    ``clean_logits`` when the caller has them, so the check costs no second clean pass.

    The full circuit recomputes every receiver's input from its senders' outputs and the biases (the
    kept form of :mod:`circuitcheck.run.edge_pass`), so this checks what every other circuit assumes:
    that the model's residual stream is that sum, read where the engine reads it."""
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
