"""Variant runs -> one comparison document: the claims x variants matrix, the verdicts that changed
against the first variant, paired differences against it (marked where they exclude zero and are at
least the smallest effect that matters), and every variant's own run document (what all renderers read).

Documented in docs/compare.md; ``schema_version`` 1.
"""

from __future__ import annotations

from typing import Any

from circuitcheck.comparison.variants import Comparison, VariantRun
from circuitcheck.plan.interventions import Measurement
from circuitcheck.report.document import json_safe
from circuitcheck.report.text import mark
from circuitcheck.spec.base import Statistics
from circuitcheck.verdict.paired import paired_difference, unpaired_difference

COMPARISON_SCHEMA = 1
NOT_APPLICABLE = "not_applicable"


def _cell(run: VariantRun, claim_id: str) -> dict[str, Any]:
    if run.doc is None or claim_id in run.not_applicable:
        return {"status": NOT_APPLICABLE, "reason": run.not_applicable.get(claim_id, "not run")}
    c = next(c for c in run.doc["claims"] if c["id"] == claim_id)
    keep = ("verdict", "as_expected", "estimate", "ci_low", "ci_high", "sentence")
    return {"status": "run", "mark": mark(c)} | {k: c[k] for k in keep}


def _measurement(run: VariantRun, claim_id: str) -> Measurement:
    assert run.result is not None, "only variants that ran have measurements"
    return next(r.measurement for r in run.result.claims if r.claim_id == claim_id)


def _tokens(run: VariantRun) -> str | None:
    return None if run.doc is None else str(run.doc["provenance"]["dataset_tokens_sha256"])


def _difference(
    run: VariantRun, ref: VariantRun, claim_id: str, stats: Statistics, min_effect: float
) -> dict[str, Any]:
    found: dict[str, Any] = {"variant": run.model, "against": ref.model, "estimate": None, "ci_low": None,
                             "ci_high": None, "excludes_zero": False, "min_effect": min_effect,
                             "large_enough": False, "differs": False}
    if NOT_APPLICABLE in (_cell(run, claim_id)["status"], _cell(ref, claim_id)["status"]):
        return found | {"basis": "not applicable"}
    differ = paired_difference if _tokens(run) == _tokens(ref) else unpaired_difference
    d = differ(_measurement(run, claim_id), _measurement(ref, claim_id), claim_id, stats)
    return found | {"estimate": d.estimate, "ci_low": d.ci_low, "ci_high": d.ci_high,
                    "excludes_zero": d.excludes_zero, "large_enough": d.large_enough(min_effect),
                    "differs": d.differs(min_effect), "basis": d.basis}


def _changed(claim: dict[str, Any], reference: str) -> list[dict[str, Any]]:
    """The variants on which the claim's verdict is not the reference's (both ran)."""
    ref = claim["cells"][reference]
    if ref["status"] != "run":
        return []
    return [
        {"claim": claim["id"], "variant": variant, "against": reference, "from": ref["verdict"],
         "to": cell["verdict"], "from_mark": ref["mark"], "to_mark": cell["mark"]}
        for variant, cell in claim["cells"].items()
        if variant != reference and cell["status"] == "run" and cell["verdict"] != ref["verdict"]
    ]


def claim_min_effect(spec_claim: Any, min_effect: float | None) -> float:
    """The smallest difference that matters for a claim: its own ``min_effect``, else the command's, else 0."""
    own = getattr(spec_claim, "min_effect", None)
    return float(own if own is not None else min_effect if min_effect is not None else 0.0)


def comparison_document(cmp: Comparison, min_effect: float | None = None) -> dict[str, Any]:
    """The comparison of ``cmp``'s variants. A difference is marked (``differs``) when its interval excludes
    zero and its size is at least the claim's ``min_effect`` (else ``min_effect``, else 0)."""
    ref = cmp.variants[0]
    stats = cmp.spec.statistics
    claims = []
    for spec_claim in cmp.spec.claims:
        cid = spec_claim.id
        smallest = claim_min_effect(spec_claim, min_effect)
        claims.append({
            "id": cid,
            "kind": spec_claim.kind,
            "statement": spec_claim.statement,
            "threshold": str(spec_claim.threshold),
            "metric": spec_claim.metric_name,
            "measures": spec_claim.measures,
            "cells": {v.model: _cell(v, cid) for v in cmp.variants},
            "differences": [_difference(v, ref, cid, stats, smallest) for v in cmp.variants[1:]],
        })
    differing = [
        {"claim": c["id"], "variant": d["variant"]} for c in claims for d in c["differences"] if d["differs"]
    ]
    changed = [found for c in claims for found in _changed(c, ref.model)]
    n_na = sum(cell["status"] == NOT_APPLICABLE for c in claims for cell in c["cells"].values())
    return json_safe({
        "schema_version": COMPARISON_SCHEMA,
        "kind": "comparison",
        "name": f"{cmp.name}-compare",
        "hypothesis_file": str(cmp.path),
        "variants": [v.model for v in cmp.variants],
        "reference": ref.model,
        "summary": {
            "claims": len(claims),
            "variants": len(cmp.variants),
            "changed": changed,
            "differing": differing,
            "not_applicable": n_na,
        },
        "min_effect": min_effect,
        "statistics": {
            "method": "paired percentile bootstrap over sequences: the same resampled sequences for both variants "
            "(independent bootstraps where the variants' datasets differ)",
            "resamples": stats.bootstrap, "seed": stats.seed, "confidence": stats.confidence,
        },
        "dataset_tokens_sha256": {v.model: _tokens(v) for v in cmp.variants},
        "claims": claims,
        "runs": {v.model: v.doc for v in cmp.variants},
    })
