"""Regression checks against a stored baseline of estimates.

A claim regresses when its estimate moved in the failing direction of its threshold
by more than its declared ``regression_tolerance`` plus the width of its current
interval, or became undefined; a regression turns the verdict into a failure, whatever
the threshold says.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from circuitcheck.atomic import exclusive_lock, write_atomic
from circuitcheck.errors import CircuitcheckError
from circuitcheck.verdict.verdict import Regression, Verdict

BASELINE_SCHEMA = 1


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise CircuitcheckError(f"{path}: cannot read baseline: {err}") from None
    if data.get("schema_version") != BASELINE_SCHEMA or not isinstance(data.get("files"), dict):
        raise CircuitcheckError(f"{path}: not a circuitcheck baseline (schema_version {BASELINE_SCHEMA})")
    return data


@dataclass(frozen=True)
class Baseline:
    """The stored estimates of one file's claims (None where the stored estimate was undefined)."""

    path: Path
    estimates: dict[str, float | None]


def _estimate(path: Path, where: str, claim: Any) -> float | None:
    value = claim.get("estimate") if isinstance(claim, dict) else None
    if value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)):
        return value
    raise CircuitcheckError(
        f"{path}: {where}.estimate: expected a number or null, got {value!r}; rewrite it with `circuitcheck baseline`"
    )


def read_baseline(path: Path, name: str) -> Baseline:
    """The stored estimates of the file whose reports are called ``name``."""
    stored = _read(path)["files"].get(name)
    if stored is None:
        raise CircuitcheckError(f"{path}: no baseline for {name!r}; write one with `circuitcheck baseline`")
    claims = stored.get("claims") if isinstance(stored, dict) else None
    if not isinstance(claims, dict):
        raise CircuitcheckError(
            f"{path}: files.{name}.claims: expected a mapping of claim ids; rewrite it with `circuitcheck baseline`"
        )
    return Baseline(path, {str(cid): _estimate(path, f"files.{name}.claims.{cid}", c) for cid, c in claims.items()})


def against_baseline(v: Verdict, baseline: Baseline, tolerance: float) -> Verdict:
    """``v`` with its :class:`Regression` against the stored estimate; failed when it regressed.

    Claims without a stored estimate, and refuted claims (whose estimate is meant to miss), are left as they are.
    """
    old = baseline.estimates.get(v.claim_id)
    if old is None or v.expect == "refuted":
        return v
    now = v.estimate
    if not math.isfinite(now):
        change = math.inf
    else:
        change = v.threshold.worsened_by(old, now)
    found = Regression(old, change, tolerance + v.interval_width)
    if not found.regressed:
        return replace(v, baseline=found)
    if math.isfinite(now):
        why = f"it worsened by {change:.4g}, more than the tolerance plus interval width ({found.allowed:.4g})"
    else:
        why = "the estimate is now undefined, so the claim can no longer be shown to hold"
    sentence = f"{v.sentence} REGRESSION: the baseline estimate was {old:.4g}; {why}."
    return replace(v, baseline=found, verdict="fail", sentence=sentence)


def update_baseline(path: Path, docs: list[dict[str, Any]]) -> Path:
    """Write (or merge into) ``path`` the estimates of every claim in ``docs`` (report documents).

    Read, merge and write happen under a lock, so two runs updating one baseline both land; the write is
    atomic, so a crash leaves the previous baseline whole.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(path.parent / f".{path.name}.lock"):
        data: dict[str, Any] = _read(path) if path.exists() else {"schema_version": BASELINE_SCHEMA, "files": {}}
        for doc in docs:
            data["files"][doc["name"]] = {
                "checkpoint_sha256": doc["provenance"]["checkpoint_sha256"],
                "claims": {c["id"]: {k: c[k] for k in ("estimate", "ci_low", "ci_high")} for c in doc["claims"]},
            }
        write_atomic(path, json.dumps(data, indent=2, sort_keys=True) + "\n")
    return path
