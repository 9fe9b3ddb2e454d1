"""Verdicts -> Report: one plain document every renderer (JSON, Markdown, terminal, HTML) reads.

The verdicts arrive decided (:func:`circuitcheck.verdict.stage.judge_file`); this module only
lays them out. The JSON form is the stable schema documented in docs/reports.md.
"""

from __future__ import annotations

import math
from dataclasses import asdict
from typing import Any

from circuitcheck.plan.compile import FilePlan
from circuitcheck.report.provenance import provenance
from circuitcheck.run.execute import FileResult
from circuitcheck.verdict.stage import FileVerdicts
from circuitcheck.verdict.verdict import Verdict

SCHEMA_VERSION = 1


def json_safe(value: Any) -> Any:
    """JSON-safe: NaN/inf become null, tuples become lists."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def spec_statistics(plan: FilePlan) -> dict[str, Any]:
    st = plan.spec.statistics
    return {
        "method": "percentile bootstrap over sequences",
        "resamples": st.bootstrap,
        "seed": st.seed,
        "confidence": st.confidence,
    }


def claim_entry(v: Verdict, warnings: list[dict[str, str]] | None = None) -> dict[str, Any]:
    """One claim of the report (before :func:`json_safe`); ``warnings``: the claim's, as
    :meth:`FilePlan.claim_warnings` gives them."""
    entry = {
        "id": v.claim_id,
        "kind": v.kind,
        "statement": v.statement,
        "verdict": v.verdict,
        "estimate": v.estimate,
        "ci_low": v.ci_low,
        "ci_high": v.ci_high,
        "threshold": str(v.threshold),
        "metric": v.metric,
        "measures": v.measures or v.metric,
        "sentence": v.sentence,
        "seed_figure": v.seed_figure,
        "expect": v.expect,
        "as_expected": v.as_expected,
        "details": v.shown_details,
        "warnings": warnings or [],
    }
    if v.baseline is not None:
        entry["baseline"] = v.baseline.shown()
    if v.null is not None:
        entry["null_control"] = v.null.shown()
        entry["uninformative"] = v.uninformative
    return entry


def build_document(result: FileResult, judged: FileVerdicts, argv: list[str] | None = None) -> dict[str, Any]:
    plan: FilePlan = result.plan
    doc: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "name": plan.name,
        "summary": judged.summary.as_dict(),
        "claims": [claim_entry(v, plan.claim_warnings(v.claim_id)) for v in judged.verdicts],
        "statistics": spec_statistics(plan),
        "self_checks": [asdict(c) for c in result.self_checks],
        "timing": {"seconds": result.seconds, "forward_rows": result.n_forward_rows, **result.timings},
        "provenance": provenance(plan, argv),
    }
    if judged.baseline is not None:
        doc["baseline"] = str(judged.baseline.path)
    return json_safe(doc)
