"""Result -> Verdicts: every step that decides a verdict, in one pass, before any report is built.

In order: each claim's interval against its threshold, its worst-case floor and what its file
expects (:func:`~circuitcheck.verdict.judge.judge`); then, across the file, Holm's correction of the
random-circuit p-values; then the regression check against a stored baseline.
"""

from __future__ import annotations

from dataclasses import dataclass

from circuitcheck.run.execute import FileResult
from circuitcheck.verdict.baseline import Baseline, against_baseline
from circuitcheck.verdict.judge import judge
from circuitcheck.verdict.multiple import apply_holm
from circuitcheck.verdict.summary import Summary
from circuitcheck.verdict.verdict import Verdict


@dataclass(frozen=True)
class FileVerdicts:
    """The verdicts of one file's claims, in the file's order, and their summary."""

    verdicts: tuple[Verdict, ...]
    summary: Summary
    baseline: Baseline | None = None


def judge_file(result: FileResult, baseline: Baseline | None = None) -> FileVerdicts:
    spec = result.plan.spec
    claims = {c.id: c for c in spec.claims}
    found = [judge(claims[r.claim_id], r, spec.statistics) for r in result.claims]
    alphas = {c.id: getattr(getattr(c, "random_baseline", None), "alpha", None) for c in spec.claims}
    found = apply_holm(found, alphas)
    if baseline is not None:
        found = [against_baseline(v, baseline, claims[v.claim_id].regression_tolerance) for v in found]
    return FileVerdicts(tuple(found), Summary.of(found), baseline)
