"""Holm's step-down correction across the random-baseline p-values of one file."""

from __future__ import annotations

from typing import Any


def holm(p_values: list[float]) -> list[float]:
    """Holm-adjusted p-values, in the input order (monotone, capped at 1)."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, (m - rank) * p_values[i])
        adjusted[i] = min(1.0, running)
    return adjusted


def apply_holm(verdicts: list[Any], alphas: dict[str, float | None]) -> list[Any]:
    """Add ``p_adjusted`` to every verdict with a p-value; fail those above their declared alpha."""
    from dataclasses import replace

    with_p = [i for i, v in enumerate(verdicts) if "p_value" in v.details]
    adjusted = holm([verdicts[i].details["p_value"] for i in with_p])
    out = list(verdicts)
    for i, p_adj in zip(with_p, adjusted, strict=True):
        v = out[i]
        details = v.details | {"p_adjusted": p_adj, "p_adjusted_over": len(with_p)}
        sentence = v.sentence + (
            f" Against {v.details['random_n']} random circuits of the same size (mean {v.details['random_mean']:.4g}): "
            f"p = {v.details['p_value']:.3g}, Holm-adjusted over {len(with_p)} claim(s) p = {p_adj:.3g}."
        )
        alpha = alphas.get(v.claim_id)
        verdict = v.verdict
        if alpha is not None and p_adj >= alpha and verdict == "pass":
            verdict = "fail"
            sentence += f" Not better than chance at alpha {alpha:g}, so the claim fails."
        out[i] = replace(v, details=details, sentence=sentence, verdict=verdict)
    return out
