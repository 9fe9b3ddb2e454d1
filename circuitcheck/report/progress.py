"""A progress bar for runs of several stages (files, model variants), on stderr.

Shown only on an interactive terminal: never with ``--quiet``, when stdout or stderr is
not a TTY, or when ``CI`` is set to a true value, so CI logs and pipes stay clean.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any


def progress_wanted(quiet: bool) -> bool:
    if quiet or os.environ.get("CI", "").strip().lower() in ("1", "true", "yes"):
        return False
    return sys.stdout.isatty() and sys.stderr.isatty()


class Tracker:
    """``total`` steps on one bar; ``step(label)`` names the running step and advances after it.

    Disabled, it does nothing at all. ``console`` is for tests (a rich Console on a buffer).
    """

    def __init__(self, total: int, enabled: bool, console: Any = None) -> None:
        self.total = total
        self.enabled = enabled
        self.console = console
        self._progress: Any = None
        self._task: Any = None
        self._label = ""

    def __enter__(self) -> Tracker:
        if self.enabled:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                SpinnerColumn,
                TextColumn,
                TimeElapsedColumn,
            )

            console = self.console or Console(stderr=True)
            columns = (
                SpinnerColumn(),
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
            )
            self._progress = Progress(*columns, console=console, transient=True)
            self._progress.__enter__()
            self._task = self._progress.add_task("starting", total=self.total)
        return self

    def __exit__(self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None) -> None:
        if self._progress is not None:
            self._progress.__exit__(kind, err, tb)
            self._progress = None

    @contextmanager
    def step(self, label: str) -> Iterator[None]:
        if self._progress is None:
            yield
            return
        self._label = label
        self._progress.update(self._task, description=label)
        try:
            yield
        finally:
            self._progress.advance(self._task)

    def note(self, detail: str) -> None:
        """Say what the running step is doing now ("variant runs: 1200 passes"), so a long step
        shows it is alive; a no-op when disabled. Cheap enough to call often."""
        if self._progress is not None:
            self._progress.update(self._task, description=f"{self._label}: {detail}")

    def advance(self) -> None:
        """Count a step as done without running it (a variant that was skipped)."""
        if self._progress is not None:
            self._progress.advance(self._task)
