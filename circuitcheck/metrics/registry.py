"""Metrics: pure functions from logits at selected positions to per-example scores.

Registering a metric needs no torch (tensors appear in annotations only), so that
``circuitcheck validate`` can check metric names without importing it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from circuitcheck.registry import Registry

if TYPE_CHECKING:
    import torch

MetricFn = Callable[["torch.Tensor", "torch.Tensor", "torch.Tensor"], "torch.Tensor"]
"""``(logits [N, V], targets [N], clean_logits [N, V]) -> scores [N]``."""


@dataclass(frozen=True)
class Metric:
    name: str
    fn: MetricFn
    higher_is_better: bool
    description: str
    reads_clean: bool = True
    """Whether ``fn`` reads its ``clean_logits`` argument. The engine then keeps the clean logits at the
    positions the metric is scored (never the whole run); a metric that says False gets an empty tensor."""
    reads_counterfactual: bool = False
    """Whether ``fn`` takes a fourth argument, ``counterfactual [N]``: the dataset's wrong answer per row
    (:attr:`circuitcheck.data.batch.TokenBatch.counterfactual`; NO_TARGET where none), or None."""

    def __call__(
        self, logits: torch.Tensor, targets: torch.Tensor, clean_logits: torch.Tensor,
        counterfactual: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if self.reads_counterfactual:
            return self.fn(logits.float(), targets, clean_logits.float(), counterfactual)  # type: ignore[call-arg]
        return self.fn(logits.float(), targets, clean_logits.float())


metrics: Registry[Metric] = Registry("metric")


def metric(
    name: str, *, higher_is_better: bool, reads_clean: bool = True, reads_counterfactual: bool = False
) -> Callable[[MetricFn], MetricFn]:
    """Register ``fn`` as metric ``name``; its docstring is the description. Say ``reads_clean=False`` when
    ``fn`` ignores the clean logits, so that runs keep none for it, and ``reads_counterfactual=True`` when
    it takes the dataset's counterfactual tokens as a fourth argument."""

    def decorator(fn: MetricFn) -> MetricFn:
        doc = (fn.__doc__ or name).strip().splitlines()[0]
        metrics.register(name)(Metric(name, fn, higher_is_better, doc, reads_clean, reads_counterfactual))
        return fn

    return decorator
