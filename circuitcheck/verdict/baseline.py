"""Regression checks against a stored baseline of estimates.

A claim regresses when its estimate moved in the failing direction of its threshold
by more than its declared ``regression_tolerance`` plus the width of its current
interval; a regression turns the verdict into a failure, whatever the threshold says.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from circuitcheck.atomic import exclusive_lock, write_atomic
from circuitcheck.errors import CircuitcheckError
from circuitcheck.report.document import summarize

BASELINE_SCHEMA = 1


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise CircuitcheckError(f"{path}: cannot read baseline: {err}") from None
    if data.get("schema_version") != BASELINE_SCHEMA or not isinstance(data.get("files"), dict):
        raise CircuitcheckError(f"{path}: not a circuitcheck baseline (schema_version {BASELINE_SCHEMA})")
    return data


def update_baseline(path: Path, docs: list[dict[str, Any]]) -> Path:
    """Write (or merge into) ``path`` the estimates of every claim in ``docs``.

    Read, merge and write happen under a lock, so two runs updating one baseline both land; the write is
    atomic, so a crash leaves the previous baseline whole.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(path.parent / f".{path.name}.lock"):
        data: dict[str, Any] = _read(path) if path.exists() else {"schema_version": BASELINE_SCHEMA, "files": {}}
        for doc in docs:
            data["files"][doc["name"]] = {
                "checkpoint_sha256": doc["provenance"]["checkpoint_sha256"],
                "claims": {c["id"]: {"estimate": c["estimate"], "ci_low": c["ci_low"], "ci_high": c["ci_high"]} for c in doc["claims"]},
            }
        write_atomic(path, json.dumps(data, indent=2, sort_keys=True) + "\n")
    return path


def apply_baseline(doc: dict[str, Any], path: Path, tolerances: dict[str, float]) -> None:
    """Fail, in place, every claim of ``doc`` that regressed against the baseline at ``path``."""
    stored = _read(path)["files"].get(doc["name"])
    if stored is None:
        raise CircuitcheckError(f"{path}: no baseline for {doc['name']!r}; write one with `circuitcheck baseline`")
    for claim in doc["claims"]:
        old = stored["claims"].get(claim["id"])
        if old is None or old["estimate"] is None or claim["expect"] == "refuted":
            continue
        now = claim["estimate"]
        worse_when_lower = claim["threshold"].startswith(">=")
        change = (old["estimate"] - now) if worse_when_lower else (now - old["estimate"]) if now is not None else float("inf")
        if now is None:
            change = float("inf")
        width = (claim["ci_high"] - claim["ci_low"]) if claim["ci_low"] is not None else 0.0
        allowed = tolerances.get(claim["id"], 0.0) + width
        claim["baseline"] = {"estimate": old["estimate"], "worsened_by": change, "allowed": allowed}
        if change > allowed:
            claim["verdict"] = "fail"
            claim["as_expected"] = False
            claim["sentence"] += (
                f" REGRESSION: the baseline estimate was {old['estimate']:.4g}; it worsened by {change:.4g}, "
                f"more than the tolerance plus interval width ({allowed:.4g})."
            )
    doc["summary"] = summarize(doc["claims"])
    doc["baseline"] = str(path)
