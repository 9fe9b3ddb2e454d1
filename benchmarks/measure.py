"""Time the engine, a naive loop and the floor side by side on one workload.

The four timed calls run in interleaved rounds (clean, engine, naive, floor;
the order rotates each round), so load from other processes on a shared
machine falls on all of them alike. Warm-up rounds are run and discarded.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from circuitcheck.plan.circuits import ModelShape
from circuitcheck.plan.interventions import CLEAN, Variant
from circuitcheck.run.edges import EdgeAblation, EdgeLayout, run_circuits
from circuitcheck.run.engine import DEFAULT_MAX_ROWS, EngineInputs, Replacements, clean_run, run_naive, run_variants
from circuitcheck.spec.circuits import Edge

AGREEMENT_ATOL = 1e-5


@dataclass(frozen=True)
class Timing:
    """Milliseconds over the timed repetitions."""

    median: float
    min: float
    max: float
    samples: tuple[float, ...]

    @classmethod
    def of(cls, seconds: list[float]) -> Timing:
        ms = [s * 1e3 for s in seconds]
        return cls(statistics.median(ms), min(ms), max(ms), tuple(ms))

    def __str__(self) -> str:
        return f"{self.median:.1f} [{self.min:.1f}, {self.max:.1f}]"


@dataclass(frozen=True)
class Method:
    reps: int
    warmup: int
    max_rows: int = DEFAULT_MAX_ROWS
    resume: bool | None = None
    """Passed to ``run_variants(resume=...)`` when set; None keeps the engine's default."""


@dataclass(frozen=True)
class Row:
    model: str
    workload: str
    n_layers: int
    n_variants: int
    n_seqs: int
    seq: int
    clean: Timing
    engine: Timing
    naive: Timing
    floor: Timing
    max_diff: float
    max_effect: float
    """Largest |engine logits - clean logits|: zero would mean the edits changed nothing
    and the agreement check proved nothing."""

    @property
    def engine_over_floor(self) -> float:
        return self.engine.median / self.floor.median

    @property
    def naive_over_engine(self) -> float:
        return self.naive.median / self.engine.median


def floor_pass(model: Any, tokens: torch.Tensor, n_variants: int, max_rows: int) -> None:
    """Raw batched forward passes over every variant's stacked inputs, no hooks, chunked as
    the engine chunks: at most ``max_rows`` variants per group, and ``max_rows // group size``
    sequences (at least one) per pass."""
    for first in range(0, n_variants, max_rows):
        group = min(max_rows, n_variants - first)
        per_chunk = max(1, max_rows // group)
        for start in range(0, len(tokens), per_chunk):
            model(torch.cat([tokens[start : start + per_chunk]] * group))


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """Wall seconds of one call, with the cyclic garbage collector off during it."""
    gc.disable()
    try:
        t = time.perf_counter()
        out = fn()
        return time.perf_counter() - t, out
    finally:
        gc.enable()


def max_abs_diff(engine: list[torch.Tensor], naive: list[torch.Tensor]) -> float:
    return max(float((a - b).abs().max()) for a, b in zip(engine, naive, strict=True))


def measure(
    name: str,
    workload: str,
    model: Any,
    variants: list[Variant],
    data: EngineInputs,
    capture: set[str],
    method: Method,
) -> Row:
    """Time the clean run, the engine, the naive loop and the floor; check engine == naive.

    Each engine and naive repetition gets a fresh :class:`Replacements`, so the means,
    resample permutations and path values it derives are paid for in every repetition
    (once per repetition for the naive loop too, which shares it across its passes).
    """
    tokens = data.inputs[CLEAN]
    max_rows = method.max_rows
    options = {} if method.resume is None else {"resume": method.resume}
    cache: dict[str, torch.Tensor] = {}

    def clean() -> torch.Tensor:
        logits, captured = clean_run(model, tokens, capture, max_rows)
        cache.update(captured)
        return logits

    def engine() -> list[torch.Tensor]:
        return run_variants(model, variants, data, Replacements(cache, model, data.masks), max_rows=max_rows, **options)

    def naive() -> list[torch.Tensor]:
        repl = Replacements(cache, model, data.masks)
        return [run_naive(model, v, data, repl) for v in variants]

    def floor() -> None:
        floor_pass(model, tokens, len(variants), max_rows)

    return _rounds(name, workload, model, tokens, len(variants), method,
                   {"clean": clean, "engine": engine, "naive": naive, "floor": floor})


def _rounds(
    name: str, workload: str, model: Any, tokens: torch.Tensor, n_variants: int, method: Method,
    calls: dict[str, Callable[[], Any]],
) -> Row:
    """Warm-up and timed rounds of the four calls, interleaved (the order rotates each round);
    then engine == naive, and how far the engine's logits moved from the clean run's."""
    order = list(calls)
    seconds: dict[str, list[float]] = {k: [] for k in calls}
    outputs: dict[str, Any] = {}
    gc.collect()  # once per workload: a full collection costs ~0.2 s with TL loaded
    with torch.no_grad():
        calls["clean"]()  # the engine and the naive loop read the cache even in the first round
        for r in range(method.warmup + method.reps):
            shift = r % len(order)
            for key in order[shift:] + order[:shift]:
                s, out = timed(calls[key])
                if r >= method.warmup:
                    seconds[key].append(s)
                outputs.setdefault(key, out)
    diff = max_abs_diff(outputs["engine"], outputs["naive"])
    effect = max_abs_diff(outputs["engine"], [outputs["clean"]] * n_variants)
    return Row(
        name, workload, model.cfg.n_layers, n_variants, tokens.shape[0], tokens.shape[1],
        *(Timing.of(seconds[k]) for k in order), max_diff=diff, max_effect=effect,
    )


def measure_edges(name: str, model: Any, circuits: list[list[Edge]], tokens: torch.Tensor, method: Method) -> Row:
    """The ``edges`` workload, timed as :func:`measure` times the others: the clean run of the sender
    hooks; the edge engine (``run_circuits``, mean ablation, which pays for its own clean run); the naive
    reference (``tests/edge_reference.py``: one unstacked pass per circuit, one hook per receiver input);
    the floor. The engine pays for its own clean run, and resumes each variant at the first reading point
    its circuit changes (a minimality variant: its cut edge's receiver)."""
    from tests.edge_reference import naive_ablated, naive_circuit  # run.py puts the repository on sys.path

    max_rows = method.max_rows
    ablation = EdgeAblation("mean")
    hooks = set(EdgeLayout(ModelShape.of(model)).sender_hooks())
    names = [{str(e) for e in edges} for edges in circuits]

    def clean() -> torch.Tensor:
        return clean_run(model, tokens, hooks, max_rows)[0]

    def engine() -> list[torch.Tensor]:
        return run_circuits(model, tokens, circuits, ablation, max_rows=max_rows)

    def naive() -> list[torch.Tensor]:
        ablated = naive_ablated(model, tokens, "mean", tokens)
        return [naive_circuit(model, tokens, edges, ablated) for edges in names]

    def floor() -> None:
        floor_pass(model, tokens, len(circuits), max_rows)

    return _rounds(name, "edges", model, tokens, len(circuits), method,
                   {"clean": clean, "engine": engine, "naive": naive, "floor": floor})
