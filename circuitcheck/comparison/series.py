"""A checkpoint series: the ordered models of ``compare --series``, and per claim its verdict against step.

``series_models`` finds the checkpoints (a folder's model subfolders, or a glob) and orders them by training
step; ``series_section`` turns a comparison document's cells into each claim's curve, the first step from
which it passes and stays passing, and the steps where its verdict flips. Documented in docs/compare.md.
"""

from __future__ import annotations

import glob
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from circuitcheck.errors import CircuitcheckError

STEP_FILES = ("card.json", "training.json")
"""Files in a checkpoint folder whose integer ``step`` key orders the series, before the folder name."""

MODEL_FILES = ("config.json", "card.json")
"""A folder holding one of these is a model (a Hugging Face folder or a zoo card)."""

MIXED = (
    "--series and --model cannot be used together: the series is the list of models\n"
    "  fix: drop --model, or drop --series and give each checkpoint with --model"
)

_LAST_INT = re.compile(r"(\d+)(?!.*\d)")


def _is_model(folder: Path) -> bool:
    return folder.is_dir() and any((folder / name).is_file() for name in MODEL_FILES)


def step_of(folder: Path) -> int | None:
    """The checkpoint's training step: the integer ``step`` of its card.json or training.json, else the last
    integer in the folder's name (``step-600`` -> 600), else None."""
    for name in STEP_FILES:
        try:
            found = json.loads((folder / name).read_text()).get("step")
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(found, int) and not isinstance(found, bool):
            return found
    last = _LAST_INT.search(folder.name)
    return int(last.group(1)) if last else None


def _candidates(pattern: str, base: Path) -> list[Path]:
    where = Path(pattern) if Path(pattern).is_absolute() else base / pattern
    if where.is_dir() and not _is_model(where):
        return sorted(p for p in where.iterdir() if _is_model(p))
    matched = glob.glob(pattern if Path(pattern).is_absolute() else str(base / pattern))
    return [Path(p) for p in sorted(matched) if _is_model(Path(p))]


def series_models(pattern: str, base: Path) -> tuple[list[str], dict[str, int | None]]:
    """The checkpoints that ``pattern`` names (a folder of model folders, or a glob, relative to ``base``),
    ordered by step; models as paths relative to ``base`` when they lie under it. When a checkpoint has no step,
    the series keeps the order found (sorted names), and every step is None."""
    found = _candidates(pattern, base)
    if len(found) < 2:
        what = "no model folders" if not found else f"only one model folder ({found[0]})"
        raise CircuitcheckError(
            f"--series {pattern!r}: {what} found (a model folder holds config.json or card.json)\n"
            "  fix: name a folder whose subfolders are checkpoints, or a glob such as 'checkpoints/step-*', "
            "matching two or more"
        )
    steps = [step_of(p) for p in found]
    if all(s is not None for s in steps):
        order = sorted(range(len(found)), key=lambda i: (steps[i], found[i].name))
        found, steps = [found[i] for i in order], [steps[i] for i in order]
    else:
        steps = [None] * len(found)
    names = [_relative(p, base) for p in found]
    return names, dict(zip(names, steps, strict=True))


def _relative(path: Path, base: Path) -> str:
    try:
        return str(path.resolve().relative_to(base.resolve()))
    except ValueError:
        return str(path)


def first_stable_pass(passes: Sequence[bool]) -> int | None:
    """The index from which every entry is True (None when the last is not)."""
    start = None
    for i, ok in enumerate(passes):
        if not ok:
            start = None
        elif start is None:
            start = i
    return start


def flips(verdicts: Sequence[str | None]) -> list[int]:
    """The indices whose verdict differs from the last earlier one that ran (None: did not run, skipped)."""
    out, last = [], None
    for i, v in enumerate(verdicts):
        if v is None:
            continue
        if last is not None and v != last:
            out.append(i)
        last = v
    return out


def series_section(doc: dict[str, Any], steps: dict[str, int | None]) -> dict[str, Any]:
    """The ``series`` key of a comparison document: per claim, its points (step, estimate, interval, verdict) in
    the series' order, the first step from which it passes and stays passing, and the steps where it flips."""
    order = doc["variants"]
    xs = [steps.get(v) if steps.get(v) is not None else i for i, v in enumerate(order)]
    claims = []
    for claim in doc["claims"]:
        points = []
        for model, x in zip(order, xs, strict=True):
            cell = claim["cells"][model]
            ran = cell["status"] == "run"
            points.append({"model": model, "step": x} | {
                k: cell.get(k) if ran else None for k in ("estimate", "ci_low", "ci_high", "verdict", "as_expected")
            })
        verdicts = [p["verdict"] for p in points]
        first = first_stable_pass([v == "pass" for v in verdicts])
        claims.append({
            "id": claim["id"], "threshold": claim["threshold"], "points": points,
            "passes_from": None if first is None else xs[first],
            "flips": [{"step": xs[i], "to": verdicts[i]} for i in flips(verdicts)],
        })
    by_step = all(steps.get(v) is not None for v in order)
    return {"x": "step" if by_step else "position in the series", "claims": claims}
