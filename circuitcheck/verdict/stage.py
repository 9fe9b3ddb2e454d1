"""Result -> Verdicts: every step that decides a verdict, in one pass, before any report is built.

In order: each claim's interval against its threshold, its worst-case floor and what its file
expects (:func:`~circuitcheck.verdict.judge.judge`); then, across the file, Holm's correction of the
random-circuit p-values; then, with the null-model control, each claim's verdicts on re-initialised copies of
the model (an uninformative claim is capped at inconclusive); then the regression check against a stored baseline.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from circuitcheck.run.execute import FileResult
from circuitcheck.verdict.baseline import Baseline, against_baseline
from circuitcheck.verdict.judge import judge
from circuitcheck.verdict.multiple import apply_holm
from circuitcheck.verdict.summary import Summary
from circuitcheck.verdict.verdict import NullControl, Verdict


@dataclass(frozen=True)
class FileVerdicts:
    """The verdicts of one file's claims, in the file's order, and their summary."""

    verdicts: tuple[Verdict, ...]
    summary: Summary
    baseline: Baseline | None = None


def judge_file(
    result: FileResult, baseline: Baseline | None = None, nulls: Sequence[tuple[int, FileResult]] = (),
) -> FileVerdicts:
    """Every verdict of the file. ``nulls`` are the same file's results on re-initialised copies of the model
    (``(seed, result)``, the null-model control): each claim gets its :class:`NullControl`, and a claim that
    passes on most copies is marked uninformative and capped at inconclusive unless it sets ``allow_uninformative``."""
    spec = result.plan.spec
    claims = {c.id: c for c in spec.claims}
    found = [judge(claims[r.claim_id], r, spec.statistics) for r in result.claims]
    alphas = {c.id: getattr(getattr(c, "random_baseline", None), "alpha", None) for c in spec.claims}
    found = apply_holm(found, alphas)
    if nulls:
        on_nulls = [(seed, {v.claim_id: v for v in judge_file(r).verdicts}, r.plan.not_applicable)
                    for seed, r in nulls]
        found = [with_null(v, null_control(v.claim_id, on_nulls, claims[v.claim_id])) for v in found]
    if baseline is not None:
        found = [against_baseline(v, baseline, claims[v.claim_id].regression_tolerance) for v in found]
    return FileVerdicts(tuple(found), Summary.of(found), baseline)


def null_control(
    claim_id: str, on_nulls: Sequence[tuple[int, dict[str, Verdict], dict[str, str]]], spec_claim: Any,
) -> NullControl:
    """One claim's verdicts on the null copies, in seed order; a copy it did not compile on gives None."""
    estimates: list[float | None] = []
    verdicts: list[str | None] = []
    skipped: dict[int, str] = {}
    for seed, verdicts_on, not_applicable in on_nulls:
        v = verdicts_on.get(claim_id)
        estimates.append(None if v is None else v.estimate)
        verdicts.append(None if v is None else v.verdict)
        if v is None:
            skipped[seed] = not_applicable.get(claim_id, "not run on this copy")
    return NullControl(on_nulls[0][0], tuple(estimates), tuple(verdicts), skipped,
                       getattr(spec_claim, "allow_uninformative", False), getattr(spec_claim, "expect", "holds"))


def with_null(v: Verdict, null: NullControl) -> Verdict:
    """Attach the null-model control; cap an uninformative claim's pass at inconclusive unless it is allowed."""
    shown = f"{null.mean:.4g}" if math.isfinite(null.mean) else "undefined"
    sentence = v.sentence + (
        f" On {null.n} re-initialised copies of the model (null model, seeds {null.seed}..{null.seed + null.n - 1}): "
        f"mean estimate {shown}, {null.passes}/{null.n} pass"
    )
    if null.not_applicable:
        sentence += f", {len(null.not_applicable)} not applicable"
    verdict = v.verdict
    if not null.uninformative:
        sentence += "." if v.expect == "holds" or not null.passes else (
            " (passing on random weights does not make a claim expected to fail uninformative).")
    elif null.allowed:
        sentence += "; uninformative (random weights mostly pass it too), kept as allow_uninformative says."
    else:
        sentence += "; uninformative: random weights mostly pass it too."
        if verdict == "pass":
            verdict = "inconclusive"
            sentence += " Capped at inconclusive (set 'allow_uninformative: true' to keep the verdict)."
    return replace(v, null=null, sentence=sentence, verdict=verdict)
