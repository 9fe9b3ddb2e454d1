"""Holm's step-down correction across the random-baseline p-values of one file."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

from circuitcheck.stats import holm
from circuitcheck.verdict.verdict import HolmCheck, Verdict

__all__ = ["apply_holm", "holm"]


def apply_holm(verdicts: Sequence[Verdict], alphas: Mapping[str, float | None]) -> list[Verdict]:
    """Give every verdict compared with random circuits its Holm-adjusted p-value; fail a passing claim
    whose adjusted p-value is not below its declared alpha."""
    compared = [(i, v.random) for i, v in enumerate(verdicts) if v.random is not None]
    adjusted = holm([random.p_value for _, random in compared])
    out = list(verdicts)
    for (i, random), p_adj in zip(compared, adjusted, strict=True):
        v = out[i]
        sentence = v.sentence + (
            f" Against {random.n} random circuits of the same size (mean {random.mean:.4g}): "
            f"p = {random.p_value:.3g}, Holm-adjusted over {len(compared)} claim(s) p = {p_adj:.3g}."
        )
        alpha = alphas.get(v.claim_id)
        verdict = v.verdict
        if alpha is not None and p_adj >= alpha and verdict == "pass":
            verdict = "fail"
            sentence += f" Not better than chance at alpha {alpha:g}, so the claim fails."
        out[i] = replace(v, holm=HolmCheck(p_adj, len(compared)), sentence=sentence, verdict=verdict)
    return out
