"""Figures drawn from a run's captured activations, for the HTML report.

A claim that captures an attention pattern (``blocks.L.attn.hook_pattern``) gets, per head,
the mean pattern over every sequence of the dataset and the pattern of one example sequence
(the one with the most annotated positions, whose roles label the rows).
"""

from __future__ import annotations

import torch

from circuitcheck.report.svg import Heatmap
from circuitcheck.run.execute import FileResult

MAX_HEADS = 4
"""Heads drawn per captured pattern; larger models show the first ones."""

Figures = dict[str, list[Heatmap]]
"""Claim id -> its heatmaps."""


def example_sequence(roles: torch.Tensor, candidates: int = 100) -> int:
    """Among the first ``candidates`` sequences, the one with the most annotated positions."""
    counts = (roles[:candidates] != 0).sum(1)
    return int(counts.argmax()) if len(counts) else 0


def _rows(matrix: torch.Tensor) -> list[list[float]]:
    return [[round(float(v), 4) for v in row] for row in matrix]


def attention_figures(result: FileResult) -> Figures:
    batch = result.plan.batch
    seq = example_sequence(batch.roles)
    marks = {p: batch.role_names[int(code)] for p, code in enumerate(batch.roles[seq].tolist()) if code}
    figures: Figures = {}
    for claim in result.plan.claims:
        for hook in sorted(h for h in claim.captures if h.endswith("hook_pattern") and h in result.captured):
            pattern = result.captured[hook]
            layer = hook.split(".")[1]
            for head in range(min(int(pattern.shape[1]), MAX_HEADS)):
                mean = pattern[:, head].double().mean(0)
                figures.setdefault(claim.claim_id, []).extend([
                    Heatmap(f"head {layer}.{head}: mean over {len(pattern)} sequences", _rows(mean)),
                    Heatmap(f"head {layer}.{head}: sequence {seq}, rows by role", _rows(pattern[seq, head]), marks),
                ])
    return figures
