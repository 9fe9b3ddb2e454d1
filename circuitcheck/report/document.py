"""Verdict -> Report: one plain document every renderer (JSON, Markdown, terminal) reads.

The JSON form is the stable schema documented in README.md ("Report schema").
"""

from __future__ import annotations

import math
from dataclasses import asdict
from typing import Any

from circuitcheck.plan.compile import FilePlan
from circuitcheck.report.provenance import provenance
from circuitcheck.run.execute import FileResult
from circuitcheck.verdict.judge import Verdict, judge

SCHEMA_VERSION = 1


def _clean(value: Any) -> Any:
    """JSON-safe: NaN/inf become null, tuples become lists."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def verdicts(result: FileResult) -> list[Verdict]:
    specs = {c.id: c for c in result.plan.spec.claims}
    return [judge(specs[r.claim_id], r) for r in result.claims]


def build_document(result: FileResult, argv: list[str] | None = None) -> dict[str, Any]:
    plan: FilePlan = result.plan
    found = verdicts(result)
    claims = [
        {
            "id": v.claim_id,
            "kind": v.kind,
            "statement": v.statement,
            "verdict": v.verdict,
            "estimate": v.estimate,
            "threshold": v.threshold,
            "metric": v.metric,
            "sentence": v.sentence,
            "seed_figure": v.seed_figure,
            "details": v.details,
        }
        for v in found
    ]
    failed = sum(v.verdict == "fail" for v in found)
    return _clean(
        {
            "schema_version": SCHEMA_VERSION,
            "name": plan.name,
            "summary": {
                "total": len(found),
                "passed": len(found) - failed,
                "failed": failed,
                "exit_code": 1 if failed else 0,
            },
            "claims": claims,
            "self_checks": [asdict(c) for c in result.self_checks],
            "timing": {"seconds": result.seconds, "forward_rows": result.n_forward_rows, **result.timings},
            "provenance": provenance(plan, argv),
        }
    )
