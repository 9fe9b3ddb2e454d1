"""The options that shape a job's run, and so take part in a cached result's key."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RunOptions:
    """The options that shape a run (and so take part in a cached result's key)."""

    max_rows: int
    resume: bool = True
    memory_budget_gib: float | None = None
    controls: bool = False
