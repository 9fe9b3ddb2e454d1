"""What a report needs to be reproduced: versions, hashes, seeds, the command."""

from __future__ import annotations

import hashlib
import platform
import shlex
import subprocess
import sys
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from circuitcheck.plan.compile import FilePlan


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"


def _git(args: list[str], cwd: Path) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=5, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def tensor_sha256(tokens: Any) -> str:
    return hashlib.sha256(tokens.contiguous().numpy().tobytes()).hexdigest()


def _seeds_in(data: object, prefix: str = "") -> dict[str, int]:
    found: dict[str, int] = {}
    if isinstance(data, list):
        for i, item in enumerate(data):
            found |= _seeds_in(item, f"{prefix}{i}.")
    if isinstance(data, dict):
        for key, value in data.items():
            name = f"{prefix}{key}"
            if "seed" in key and isinstance(value, int):
                found[name] = value
            else:
                found |= _seeds_in(value, f"{name}.")
    return found


def all_seeds(plan: FilePlan) -> dict[str, object]:
    """Every seed that shaped the report: data, bootstrap, and each claim's own."""
    claims = {c.id: _seeds_in(c.model_dump()) for c in plan.spec.claims}
    return {
        "dataset": _seeds_in(dict(plan.batch.params)),
        "bootstrap": plan.spec.statistics.seed,
        "claims": {k: v for k, v in claims.items() if v},
    }


def provenance(plan: FilePlan, argv: list[str] | None = None) -> dict[str, Any]:
    here = plan.path.resolve().parent
    commit = _git(["rev-parse", "HEAD"], here)
    dirty = _git(["status", "--porcelain"], here)
    command = argv if argv is not None else ["circuitcheck", "run", str(plan.path)]
    return {
        "circuitcheck": _version("circuitcheck"),
        "torch": _version("torch"),
        "transformer_lens": _version("transformer_lens"),
        "python": platform.python_version(),
        "platform": sys.platform,
        "model": plan.loaded.name,
        "checkpoint": str(plan.loaded.checkpoint),
        "checkpoint_sha256": plan.loaded.checkpoint_sha256,
        "hypothesis_file": str(plan.path),
        "hypothesis_sha256": plan.source_sha256 or hashlib.sha256(plan.path.read_bytes()).hexdigest(),
        "dataset": dict(plan.batch.params),
        "dataset_tokens_sha256": tensor_sha256(plan.batch.tokens),
        "seeds": all_seeds(plan),
        "git_commit": commit,
        "git_dirty": bool(dirty) if dirty is not None else None,
        "model_source": plan.loaded.source,
        "device": plan.loaded.device,
        "dtype": plan.loaded.dtype,
        "bridge_check": plan.loaded.bridge_check,
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": shlex.join(command),
    }
