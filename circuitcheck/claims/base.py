"""Claim kinds: one file each, a spec class registered with :func:`claim_kind`.

A claim spec knows how to compile itself into a :class:`ClaimPlan` against a
concrete model and dataset. The engine runs plans; it knows no claim kind.

The keys every claim has, and the registry, live in :mod:`circuitcheck.spec.kinds`, so that
loading and validating a file needs no torch; this module adds what compiles. Claim modules
import torch inside the functions that need a model, for the same reason: ``circuitcheck
validate`` imports every claim module (tests/test_torch_free.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from circuitcheck.data.batch import TokenBatch
from circuitcheck.metrics import Metric
from circuitcheck.plan.context import CompileContext
from circuitcheck.plan.interventions import ClaimPlan
from circuitcheck.spec.kinds import ClaimFields, claim_kinds
from circuitcheck.stats import per_sequence

if TYPE_CHECKING:
    import torch

__all__ = ["ClaimSpec", "CompileContext", "claim_kind", "claim_kinds", "masked_scores", "sequence_sums"]


class ClaimSpec(ClaimFields):
    """A claim kind: its keys (beyond :class:`ClaimFields`), and how it compiles against a model."""

    def compile(self, ctx: CompileContext) -> ClaimPlan:
        raise NotImplementedError


def claim_kind(cls: type[ClaimSpec]) -> type[ClaimSpec]:
    """Register a claim spec class under the default of its ``kind`` field."""
    name = cls.model_fields["kind"].default
    cls.kind_name = name
    claim_kinds.register(name)(cls)
    return cls


def sequence_sums(metric: Metric, logits: torch.Tensor, out: Any, mask: torch.Tensor) -> torch.Tensor:
    """Per-sequence totals of ``metric`` at ``mask``'s positions (for :class:`SequenceStats`)."""
    return per_sequence(masked_scores(metric, logits, out.batch, mask, out.clean_logits), mask)


def masked_scores(metric: Metric, logits: torch.Tensor, batch: TokenBatch, mask: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
    """Per-example scores of ``metric`` at ``mask``'s positions (flattened)."""
    return metric(logits[mask], batch.next_token[mask], clean[mask])
