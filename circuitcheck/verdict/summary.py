"""One file's verdicts counted, and the exit code they give."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from circuitcheck.verdict.verdict import Verdict

EXIT_PASS, EXIT_FAIL, EXIT_INCONCLUSIVE = 0, 1, 3


@dataclass(frozen=True)
class Summary:
    """Counts of a file's claims by :attr:`Verdict.as_expected`: a claim counts as passed when its
    verdict is what the file expects (a refuted claim that failed, a known failure still failing)."""

    total: int
    passed: int
    failed: int
    inconclusive: int
    refuted_as_expected: int
    known_failures: int
    exit_code: int

    @classmethod
    def of(cls, verdicts: Sequence[Verdict]) -> Summary:
        failed = sum(v.as_expected is False for v in verdicts)
        inconclusive = sum(v.as_expected is None for v in verdicts)
        return cls(
            total=len(verdicts),
            passed=len(verdicts) - failed - inconclusive,
            failed=failed,
            inconclusive=inconclusive,
            refuted_as_expected=sum(v.as_expected is True and v.expect == "refuted" for v in verdicts),
            known_failures=sum(v.as_expected is True and v.expect == "known_failure" for v in verdicts),
            exit_code=EXIT_FAIL if failed else EXIT_INCONCLUSIVE if inconclusive else EXIT_PASS,
        )

    def as_dict(self) -> dict[str, Any]:
        """The report's ``summary`` object (keys in this order)."""
        return asdict(self)
