"""circuitcheck: test mechanistic-interpretability circuit hypotheses written as YAML.

Pipeline: YAML --load--> Spec --compile--> Plan --run--> Result --judge--> Verdict --render--> Report.

    import circuitcheck
    report = circuitcheck.check("hypotheses/trigram.yaml")
    report.claims["T1"].verdict  # "pass"

``import circuitcheck`` is cheap: ``check``, ``compare`` and the report types load on first use
(they bring torch and TransformerLens with them).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from circuitcheck.errors import CircuitcheckError, ModelLoadError, SelfCheckError, SpecError, SpecErrors

if TYPE_CHECKING:
    from circuitcheck.api import check, compare
    from circuitcheck.comparison.report import ComparisonReport
    from circuitcheck.report.report import Report
    from circuitcheck.verdict.summary import Summary
    from circuitcheck.verdict.verdict import Verdict

__version__ = "0.1.0"

__all__ = [
    "CircuitcheckError",
    "ComparisonReport",
    "ModelLoadError",
    "Report",
    "SelfCheckError",
    "SpecError",
    "SpecErrors",
    "Summary",
    "Verdict",
    "__version__",
    "check",
    "compare",
]

_LAZY = {
    "check": "circuitcheck.api",
    "compare": "circuitcheck.api",
    "ComparisonReport": "circuitcheck.comparison.report",
    "Report": "circuitcheck.report.report",
    "Summary": "circuitcheck.verdict.summary",
    "Verdict": "circuitcheck.verdict.verdict",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'circuitcheck' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
