"""Metrics: registered with :func:`metric`; the built-ins live in ``builtin.py``."""

from circuitcheck.metrics import builtin as _builtin  # noqa: F401  (the built-ins, always present)
from circuitcheck.metrics.registry import Metric, metric, metrics

__all__ = ["Metric", "metric", "metrics"]
