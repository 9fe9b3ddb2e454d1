"""The clean pass of a file: its logits to a sink, and only as much of its activations as the run needs.

What a run keeps of the clean activations, per hook:

- ``full``: every sequence (sources that read other sequences or the same one: patching, resampling,
  linearised MLPs, path patching; claims' captures; the caches that passes resume from);
- ``window``: the first ``window`` sequences (the self-check variants, which run on the window only);
- ``mean``: the per-position mean over sequences (mean ablation), summed chunk by chunk;
- ``reduced``: what a claim's :class:`~circuitcheck.plan.interventions.Capture` keeps of each chunk.

:func:`plan_memory` measures what one sequence costs at each hook (a one-sequence probe pass) and checks
the full caches against ``--memory-budget`` before the pass: required caches that do not fit are an error
that names the budget; resume caches that do not fit are dropped, and passes start from the tokens.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from circuitcheck.errors import MemoryBudgetError
from circuitcheck.plan.interventions import Capture
from circuitcheck.run.engine import assert_fired, counted_hooks, host_logits, on_model
from circuitcheck.run.heap import release_freed_memory

DEFAULT_BUDGET_SHARE = 0.1
"""The default ``--memory-budget``: this share of the machine's physical memory."""


def default_budget_bytes() -> int:
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") * DEFAULT_BUDGET_SHARE)
    except (ValueError, OSError, AttributeError):  # no sysconf: assume a 16 GiB machine
        return int(16 * 2**30 * DEFAULT_BUDGET_SHARE)


@dataclass(frozen=True)
class CleanCaptures:
    """What the clean pass keeps, by hook."""

    full: set[str] = field(default_factory=set)
    window: set[str] = field(default_factory=set)
    mean: set[str] = field(default_factory=set)
    reduced: tuple[Capture, ...] = ()


@dataclass(frozen=True)
class CleanPass:
    acts: dict[str, torch.Tensor]
    """``full`` hooks, every sequence; and each reduced capture by its key."""
    window_acts: dict[str, torch.Tensor]
    """``window`` hooks, the first ``window`` sequences."""
    means: dict[str, torch.Tensor]
    """``mean`` hooks: ``[1, ...]``, the per-position mean over every sequence."""


def clean_pass(
    model: Any,
    tokens: torch.Tensor,
    captures: CleanCaptures,
    max_rows: int,
    window: int,
    on_chunk: Callable[[int, torch.Tensor], None],
) -> CleanPass:
    """The clean run in chunks of ``max_rows`` sequences; logits to ``on_chunk(first, logits)``."""
    full: dict[str, list[torch.Tensor]] = {h: [] for h in captures.full}
    head: dict[str, list[torch.Tensor]] = {h: [] for h in captures.window}
    sums: dict[str, torch.Tensor] = {}
    reduced: dict[str, list[torch.Tensor]] = {c.key: [] for c in captures.reduced}
    hooks = sorted(captures.full | captures.window | captures.mean | {c.hook for c in captures.reduced})

    def saver(name: str, first: int) -> Callable[[torch.Tensor], None]:
        def save(act: torch.Tensor) -> None:
            act = act.detach()
            if name in full:
                full[name].append(act.clone())
            if name in head and first < window:
                head[name].append(act[: window - first].clone())
            if name in captures.mean:
                total = act.double().sum(0, keepdim=True)
                sums[name] = total if name not in sums else sums[name] + total
            for capture in captures.reduced:
                if capture.hook == name:
                    reduced[capture.key].append(capture.reduce(act).clone())

        return save

    for first in range(0, len(tokens), max_rows):
        with counted_hooks(model, {name: saver(name, first) for name in hooks}) as calls:
            logits = host_logits(model(on_model(model, tokens[first : first + max_rows])))
        assert_fired(calls, hooks, "clean run")
        on_chunk(first, logits)
        del logits
        release_freed_memory()
    n = len(tokens)
    means = {name: (total / n).to(torch.float32) for name, total in sums.items()}
    acts = {k: torch.cat(v) for k, v in (full | reduced).items()}
    return CleanPass(acts, {k: torch.cat(v) for k, v in head.items()}, means)


def bytes_per_sequence(model: Any, tokens: torch.Tensor, hooks: set[str]) -> dict[str, int]:
    """What one sequence of ``tokens`` costs to keep at each hook (a one-sequence probe pass)."""
    sizes: dict[str, int] = {}
    if not hooks:
        return sizes

    def measure(name: str) -> Callable[[torch.Tensor], None]:
        def size(act: torch.Tensor) -> None:
            sizes[name] = act[0].numel() * act.element_size()

        return size

    with counted_hooks(model, {h: measure(h) for h in hooks}), torch.no_grad():
        model(tokens[:1])
    return sizes


@dataclass(frozen=True)
class MemoryPlan:
    resume: bool
    """Whether the resume caches fit beside the required ones."""
    required_bytes: int
    resume_bytes: int
    budget_bytes: int

    def describe(self) -> str:
        gib = 2**30
        line = (f"clean caches {self.required_bytes / gib:.2f} GiB required"
                f" + {self.resume_bytes / gib:.2f} GiB to resume passes, budget {self.budget_bytes / gib:.2f} GiB")
        return line + ("" if self.resume else ": resuming off, passes start from the tokens")


def plan_memory(
    model: Any, tokens: torch.Tensor, required: set[str], resume: set[str], budget: int
) -> MemoryPlan:
    """Check the full caches against ``budget`` bytes (module docstring)."""
    sizes = bytes_per_sequence(model, tokens, required | resume)
    n = len(tokens)
    need = sum(sizes.get(h, 0) for h in required) * n
    extra = sum(sizes.get(h, 0) for h in resume - required) * n
    if need > budget:
        biggest = sorted(required, key=lambda h: -sizes.get(h, 0))[:3]
        raise MemoryBudgetError(
            f"the clean activations this file must keep ({need / 2**30:.2f} GiB for {n} sequences, most at "
            f"{', '.join(biggest)}) exceed the memory budget of {budget / 2**30:.2f} GiB; fix: raise "
            "--memory-budget (default: 10% of RAM), or use fewer sequences (the dataset's n_seqs)"
        )
    return MemoryPlan(need + extra <= budget, need, extra, budget)
