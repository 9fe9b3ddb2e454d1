"""The sweep's draft hypothesis file: its top cells as ``activation_patching`` claims, to test on fresh data.

A sweep is discovery: the top-k of many cells, picked on one dataset, are inflated by the picking (the
winner's curse). The draft states each cell as a claim to confirm, not a result:

- its threshold is ``at_least`` :data:`THRESHOLD_SHARE` of the lower bound of the cell's interval on the
  discovery data, rounded down to 0.01; cells whose lower bound is not above 0 are left out (no claim of
  recovery can be drawn from them);
- its ``dataset:`` is the file's with ``seed`` + :data:`SEED_OFFSET`, so ``circuitcheck run`` on the draft
  measures every cell on sequences the sweep never saw (a dataset without a seed is copied as it is, and
  the header says the draft then re-tests on the same data);
- cells that the vacuity lint refuses (patching that cuts every path from the corruption to the scored
  positions recovers everything by construction) are left out.
"""

from __future__ import annotations

import copy
import math
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from circuitcheck.claims.activation_patching import ActivationPatchingClaim
from circuitcheck.data.batch import TokenBatch
from circuitcheck.errors import CircuitcheckError, PlanError
from circuitcheck.plan.compile import FilePlan
from circuitcheck.plan.context import CompileContext
from circuitcheck.plan.vacuity import check_vacuity
from circuitcheck.sweep.cells import position_mask
from circuitcheck.zoo.load import resolve_model_dir, zoo_root

SEED_OFFSET = 1000
THRESHOLD_SHARE = 0.8


@dataclass(frozen=True)
class DraftCell:
    component: str
    position: int
    estimate: float
    lo: float
    hi: float


def threshold_for(lo: float) -> float:
    """``at_least`` for a cell whose interval's lower bound on the discovery data is ``lo`` (> 0)."""
    return math.floor(THRESHOLD_SHARE * lo * 100) / 100


def model_ref(written: str, base: Path, folder: Path) -> str:
    """A ``model:`` written relative to ``base``, as a file in ``folder`` must write it: zoo names and ``hf:``
    names as they are, paths re-rooted at ``folder``."""
    if written.startswith("hf:"):
        return written
    try:
        where = resolve_model_dir(written, base)
    except CircuitcheckError:  # loaded by a route this resolver does not know: keep the user's words
        return written
    if where.resolve().parent == zoo_root().resolve() and written == where.name:
        return written
    return os.path.relpath(where.resolve(), folder.resolve())


def _dataset(plan: FilePlan, folder: Path) -> tuple[dict[str, Any], int | None]:
    """The file's dataset for the draft (seed moved), and the seed it moved to (None: it has no seed)."""
    data: dict[str, Any] = plan.spec.dataset.model_dump(mode="json", by_alias=True, exclude_unset=True)
    data["kind"] = plan.spec.dataset.kind
    base = plan.base or plan.path.resolve().parent
    if isinstance(data.get("path"), str):  # a file of tokens or prompts, written relative to the file's folder
        data["path"] = os.path.relpath((base / data["path"]).resolve(), folder.resolve())
    seed = data.get("seed")
    if isinstance(seed, int):
        data["seed"] = seed + SEED_OFFSET
        return data, seed + SEED_OFFSET
    return data, None


def _free_name(taken: set[str], wanted: str) -> str:
    name, i = wanted, 2
    while name in taken:
        name, i = f"{wanted}_{i}", i + 1
    return name


def mixed_roles(batch: TokenBatch, position: int) -> str:
    """A note for a position that holds different roles in different sequences (a ``prompts`` dataset mixing slot
    orders): a cell is one absolute position, so the draft must not read as if it were one role."""
    codes = batch.roles[:, position].tolist()
    counts = {batch.role_names[c]: codes.count(c) for c in dict.fromkeys(codes)}
    if len(counts) < 2:
        return ""
    held = ", ".join(f"{role} in {n}" for role, n in sorted(counts.items(), key=lambda kv: -kv[1]))
    return f" (not one role: on the sweep's data it holds {held} of {len(codes)} sequences)"


def draft_text(
    plan: FilePlan, folder: Path, cells: list[DraftCell], corruption: dict[str, Any], positions: str, metric: str,
    k: int, command: str, confidence: float, model: str | None = None,
) -> tuple[str | None, list[str]]:
    """The draft's YAML text: claims for those of the top ``k`` of ``cells`` (ranked) that qualify (None when
    none does); and notes on the ones left out (shown by the CLI and in the JSON). ``model``: the ``--model`` the
    sweep ran on, if any."""
    spec = plan.spec
    # ``model``: the command line's --model (relative to the current directory), else the file's (to its folder)
    model_written = (model, Path.cwd()) if model is not None else (str(spec.model),
                                                                   plan.base or plan.path.resolve().parent)
    spec_positions = {name: sel.model_dump(mode="json", by_alias=True, exclude_unset=True)
                      for name, sel in spec.positions.items()}
    dataset, fresh_seed = _dataset(plan, folder)
    claims: list[dict[str, Any]] = []
    notes: list[str] = []
    masks = dict(plan.masks)
    level = f"{round(confidence * 100)}% CI"
    for cell in cells[:k]:
        if not (math.isfinite(cell.lo) and cell.lo > 0):
            notes.append(f"{cell.component} at {cell.position}: interval [{cell.lo:.3g}, {cell.hi:.3g}] does not "
                         "exclude 0; no claim drafted")
            continue
        at = f"sweep_at_{cell.position}"
        if spec_positions.get(at) != {"indices": [cell.position]}:
            at = _free_name(set(spec_positions), at)
        added = at not in spec_positions
        if added:
            spec_positions[at] = {"indices": [cell.position]}
            n_seqs, seq = (int(d) for d in plan.batch.tokens.shape)
            masks[at] = position_mask(n_seqs, seq, cell.position)
        claim = {
            "id": f"S{len(claims) + 1}-{cell.component.replace('.', '_')}-at-{cell.position}",
            "statement": (f"Patching the clean output of {cell.component} at position {cell.position}"
                          f"{mixed_roles(plan.batch, cell.position)} into the corrupted run recovers at least "
                          f"{threshold_for(cell.lo):g} of {metric} at {positions}."),
            "kind": "activation_patching",
            "seed_figure": f"sweep on the discovery data: {cell.estimate:.4g} [{level} {cell.lo:.4g}, {cell.hi:.4g}]",
            "corruption": copy.deepcopy(corruption),  # one object per claim: no YAML anchors in the draft
            "patch": [cell.component],
            "patch_at": at,
            "positions": positions,
            "metric": metric,
            "threshold": {"at_least": threshold_for(cell.lo)},
        }
        probe = ActivationPatchingClaim.model_validate(claim)
        ctx = CompileContext(plan.loaded.model, plan.batch, masks, dict(plan.inputs), ("claims", len(claims)),
                             plan.loaded.card, plan.base, plan.circuits)
        try:
            probe.compile(ctx)
            check_vacuity(probe, ctx)
        except PlanError as err:
            notes.append(f"{cell.component} at {cell.position}: left out: {err.message}")
            if added:
                del spec_positions[at]
            continue
        claims.append(claim)
    doc: dict[str, Any] = {"version": 1, "name": f"{plan.name}-draft", "model": model_ref(*model_written, folder),
                           "dataset": dataset, "positions": spec_positions}
    if "statistics" in spec.model_fields_set:
        doc["statistics"] = spec.statistics.model_dump(mode="json")
    doc["claims"] = claims
    old_seed = plan.spec.dataset.model_dump().get("seed")
    data_line = (
        f"# The dataset below is the file's with seed {fresh_seed} (the sweep used {old_seed}): running this file\n"
        "# tests each cell on sequences the sweep never saw.\n"
        if fresh_seed is not None else
        "# WARNING: the file's dataset has no seed, so this draft runs on the sweep's own data: it re-tests the\n"
        "# cells, it does not confirm them. Point 'dataset:' at held-out data before relying on it.\n"
    )
    header = (
        f"# Draft hypotheses from a patching sweep of {plan.path} ({datetime.now(UTC).date()}):\n"
        f"#   {command}\n"
        "# DISCOVERY, NOT CONFIRMATION. These are the top cells of the sweep, picked on the sweep's data, which\n"
        "# inflates them. Each threshold is at_least "
        f"{THRESHOLD_SHARE:g} x the lower bound of the cell's {level} on that data,\n"
        "# rounded down to 0.01; cells whose interval does not exclude 0, and cells the vacuity lint refuses,\n"
        "# are left out. seed_figure records what the sweep measured.\n" + data_line
    )
    if not claims:  # a file without claims is not a hypothesis file: write none
        notes.append(f"none of the top {k} cells qualified for a claim: no draft written")
        return None, notes
    body = yaml.safe_dump(doc, sort_keys=False, default_flow_style=None, width=110)
    return header + body, notes
