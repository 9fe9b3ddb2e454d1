"""Errors users see. Each one says where, what, and how to fix it; none is a traceback."""

from __future__ import annotations

from dataclasses import dataclass


class CircuitcheckError(Exception):
    """Base class: bad input or a broken run. The CLI prints it and exits 2."""

    exit_code = 2


@dataclass(frozen=True)
class SourceLocation:
    file: str
    line: int
    col: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


class SpecError(CircuitcheckError):
    """A problem in a hypothesis file, pinned to ``file:line:col``."""

    def __init__(
        self, where: SourceLocation, path: str, message: str, fix: str | None = None
    ) -> None:
        self.where = where
        self.path = path
        self.message = message
        self.fix = fix
        super().__init__(str(self))

    def __str__(self) -> str:
        text = f"{self.where}: {self.path + ': ' if self.path else ''}{self.message}"
        return f"{text}\n  fix: {self.fix}" if self.fix else text


MAX_SHOWN_ERRORS = 50
"""Spec problems printed at most; a hostile file can make thousands."""


class SpecErrors(CircuitcheckError):
    """Several spec problems found in one pass, reported together.

    ``omitted`` counts problems found but not turned into :class:`SpecError`
    (the loader stops at :data:`MAX_SHOWN_ERRORS`); they are summed in the text.
    """

    def __init__(self, errors: list[SpecError], omitted: int = 0) -> None:
        self.errors = errors
        self.omitted = omitted
        lines = [str(e) for e in errors[:MAX_SHOWN_ERRORS]]
        more = omitted + max(0, len(errors) - MAX_SHOWN_ERRORS)
        if more:
            lines.append(f"... and {more} more problems; fix these first")
        super().__init__("\n".join(lines))


class ModelLoadError(CircuitcheckError):
    """A checkpoint that cannot be found, read or matched to its config."""


class DataError(CircuitcheckError):
    """A dataset that cannot be built or loaded."""


class SelfCheckError(CircuitcheckError):
    """An engine invariant failed: the run is invalid, never a pass."""


class MemoryBudgetError(CircuitcheckError):
    """A run would keep more than its memory budget (``--memory-budget``); raised before the clean pass."""


class PlanError(CircuitcheckError):
    """A spec that parsed but does not fit the model or data.

    Raised while compiling, with the offending spec path; the compiler turns it
    into a :class:`SpecError` pinned to the file position of that path.
    """

    def __init__(self, path: tuple[str | int, ...], message: str, fix: str | None = None) -> None:
        self.path = path
        self.message = message
        self.fix = fix
        super().__init__(message)
