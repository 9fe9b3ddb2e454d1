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
from circuitcheck.verdict.multiple import apply_holm

SCHEMA_VERSION = 1
EXIT_PASS, EXIT_FAIL, EXIT_INCONCLUSIVE = 0, 1, 3


def json_safe(value: Any) -> Any:
    """JSON-safe: NaN/inf become null, tuples become lists."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def summarize(claims: list[dict[str, Any]]) -> dict[str, Any]:
    """Counts and exit code: a claim counts as passed when its verdict is what the file expects."""
    failed = sum(c["as_expected"] is False for c in claims)
    inconclusive = sum(c["as_expected"] is None for c in claims)
    refuted = sum(c["as_expected"] is True and c["expect"] == "refuted" for c in claims)
    known = sum(c["as_expected"] is True and c["expect"] == "known_failure" for c in claims)
    return {
        "total": len(claims),
        "passed": len(claims) - failed - inconclusive,
        "failed": failed,
        "inconclusive": inconclusive,
        "refuted_as_expected": refuted,
        "known_failures": known,
        "exit_code": EXIT_FAIL if failed else EXIT_INCONCLUSIVE if inconclusive else EXIT_PASS,
    }


def headline(s: dict[str, Any]) -> str:
    """"6/7 claims as expected (1 refuted as expected, 2 known failures), 1 inconclusive"."""
    notes = [f"{s['refuted_as_expected']} refuted as expected"] if s.get("refuted_as_expected") else []
    notes += [f"{s['known_failures']} known failure(s) still failing"] if s.get("known_failures") else []
    text = f"{s['passed']}/{s['total']} claims as expected" + (f" ({', '.join(notes)})" if notes else "")
    return text + (f", {s['inconclusive']} inconclusive" if s["inconclusive"] else "")


def spec_statistics(plan: FilePlan) -> dict[str, Any]:
    st = plan.spec.statistics
    return {"method": "percentile bootstrap over sequences", "resamples": st.bootstrap, "seed": st.seed, "confidence": st.confidence}


def verdicts(result: FileResult) -> list[Verdict]:
    spec = result.plan.spec
    claims = {c.id: c for c in spec.claims}
    judged = [judge(claims[r.claim_id], r, spec.statistics) for r in result.claims]
    alphas = {c.id: getattr(getattr(c, "random_baseline", None), "alpha", None) for c in spec.claims}
    return apply_holm(judged, alphas)


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
            "ci_low": v.ci_low,
            "ci_high": v.ci_high,
            "threshold": v.threshold,
            "metric": v.metric,
            "sentence": v.sentence,
            "seed_figure": v.seed_figure,
            "expect": v.expect,
            "as_expected": v.as_expected,
            "details": v.details,
        }
        for v in found
    ]
    return json_safe(
        {
            "schema_version": SCHEMA_VERSION,
            "name": plan.name,
            "summary": summarize(claims),
            "claims": claims,
            "statistics": spec_statistics(plan),
            "self_checks": [asdict(c) for c in result.self_checks],
            "timing": {"seconds": result.seconds, "forward_rows": result.n_forward_rows, **result.timings},
            "provenance": provenance(plan, argv),
        }
    )
