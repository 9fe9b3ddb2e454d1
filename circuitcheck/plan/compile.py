"""Spec -> Plan: load the model and data, resolve every name, build frozen claim plans.

Nothing here runs a forward pass; every error is pinned to the file position
of the spec value that caused it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from circuitcheck.data.batch import TokenBatch
from circuitcheck.data.registry import DataContext, build_dataset
from circuitcheck.errors import CircuitcheckError, PlanError, SpecError, SpecErrors
from circuitcheck.plan.circuits import CompiledCircuit, ModelShape, compile_circuits
from circuitcheck.plan.context import CompileContext
from circuitcheck.plan.interventions import CLEAN, ClaimPlan
from circuitcheck.plan.positions import resolve_selections
from circuitcheck.plan.vacuity import check_vacuity
from circuitcheck.spec.hypothesis import load_hypothesis, report_stem
from circuitcheck.spec.warnings import ClaimWarning, spec_warnings
from circuitcheck.spec.yaml_source import SourceMap
from circuitcheck.zoo.load import FILE_FOLDER, LoadedModel, load, reinitialised


@dataclass(frozen=True)
class FilePlan:
    path: Path
    spec: Any
    source_map: SourceMap
    loaded: LoadedModel
    batch: TokenBatch
    masks: dict[str, torch.Tensor]
    inputs: dict[str, torch.Tensor]
    claims: tuple[ClaimPlan, ...]
    not_applicable: dict[str, str] = field(default_factory=dict)
    """Claim id -> why it cannot apply to this model (only with ``skip_inapplicable``)."""
    source_sha256: str | None = None
    """The spec's own hash when it was built in Python (no file to hash)."""
    circuits: dict[str, CompiledCircuit] = field(default_factory=dict)
    """The file's circuits as graphs, checked against the model (their warnings included)."""
    warnings: tuple[ClaimWarning, ...] = ()
    """Numbers that cannot mean anything (:mod:`circuitcheck.spec.warnings`): the model-free rules, and those
    the claims found when they compiled (a random baseline's pool, counted from its seeded draws)."""
    base: Path | None = None
    """The folder the file's relative model and data paths resolved against."""

    def claim_warnings(self, claim_id: str) -> list[dict[str, str]]:
        """The warnings of ``claim_id`` as the reports show them (``{rule, where, path, message, fix}``)."""
        return [w.shown(self.source_map) for w in self.warnings if w.claim_id == claim_id]

    @property
    def name(self) -> str:
        return report_stem(self.spec, self.path)


def _pinned(err: PlanError, smap: SourceMap) -> SpecError:
    path = smap.written(err.path)  # an inline selection's error is where it is written, not under positions:
    return SpecError(smap.locate(path), ".".join(map(str, path)), err.message, err.fix)


def compile_file(path: Path, model_override: str | None = None, skip_inapplicable: bool = False) -> FilePlan:
    """Compile every claim against the file's ``model:`` (a zoo name, or a path relative to the file's
    folder) or ``model_override`` (a zoo name, or a path relative to the current directory, as typed
    on a command line). With ``skip_inapplicable``, claims that do not fit the model (and claims
    derived from them) are left out and listed in ``FilePlan.not_applicable`` instead of raising."""
    spec, smap = load_hypothesis(path)
    return compile_spec(spec, smap, path, model_override, skip_inapplicable)


def compile_spec(
    spec: Any, smap: SourceMap, path: Path, model_override: str | None = None, skip_inapplicable: bool = False,
    *, base: Path | None = None, source_sha256: str | None = None,
) -> FilePlan:
    """:func:`compile_file` on a validated spec that ``path`` names. Its relative model and data paths
    resolve against ``base``: by default ``path``'s folder; a spec built in Python passes the current directory."""
    base_is = FILE_FOLDER if base is None else None
    base = path.resolve().parent if base is None else base
    if model_override is not None:  # typed on the command line: relative to where it was typed
        loaded = load(model_override)
    else:
        try:
            loaded = load(spec.model, base, base_is)
        except CircuitcheckError as err:
            raise SpecError(smap.locate(("model",)), "model", str(err)) from None
    cfg = loaded.model.cfg
    try:
        batch = build_dataset(spec.dataset, DataContext(loaded.card, base, int(cfg.d_vocab), int(cfg.n_ctx),
                                                        tokenizer=getattr(loaded, "tokenizer", None),
                                                        model_name=loaded.name))
    except PlanError as err:
        raise _pinned(err, smap) from None
    return compile_against(spec, smap, path, loaded, batch, base, skip_inapplicable, source_sha256)


def compile_against(
    spec: Any, smap: SourceMap, path: Path, loaded: LoadedModel, batch: TokenBatch, base: Path,
    skip_inapplicable: bool = False, source_sha256: str | None = None,
) -> FilePlan:
    """Compile ``spec``'s claims against ``loaded`` on the dataset ``batch`` (already built): what
    :func:`compile_spec` does after loading, and what the null-model control reuses on each re-initialised copy."""
    try:
        masks = resolve_selections(spec.positions, batch)
    except PlanError as err:
        raise _pinned(err, smap) from None
    inputs = {CLEAN: batch.tokens}
    circuits, circuit_errors = compile_circuits(getattr(spec, "circuits", {}), ModelShape.of(loaded.model))
    if circuit_errors:  # before the claims: a claim may name a circuit
        raise SpecErrors([_pinned(err, smap) for err in circuit_errors])
    plans, errors = [], []
    skipped: dict[str, str] = {}
    warnings = spec_warnings(spec, smap, read_card=False)  # the model-free rules; the claims add the rest
    for i, claim in enumerate(spec.claims):
        ctx = CompileContext(loaded.model, batch, masks, inputs, ("claims", i), loaded.card, base, circuits,
                             warnings)
        try:
            plan = claim.compile(ctx)
            check_vacuity(claim, ctx)  # claims that cannot fail on this model and data: circuitcheck.plan.vacuity
            plans.append(plan)
        except PlanError as err:
            errors.append(_pinned(err, smap))
            skipped[claim.id] = str(errors[-1]).splitlines()[0]
    if errors and not skip_inapplicable:
        raise SpecErrors(errors)
    for plan in plans:
        missing = [d for d in plan.depends_on if d in skipped]
        if missing:
            skipped[plan.claim_id] = f"depends on {', '.join(missing)}, which cannot apply to this model"
    kept = tuple(p for p in plans if p.claim_id not in skipped)
    ordered = sorted(warnings, key=lambda w: (smap.locate(smap.written(w.path)).line,
                                              smap.locate(smap.written(w.path)).col))
    return FilePlan(path, spec, smap, loaded, batch, masks, inputs, kept, skipped, source_sha256, circuits,
                    tuple(w for w in ordered if w.claim_id not in skipped), base)


def null_plans(plan: FilePlan, n: int, seed: int) -> list[tuple[int, FilePlan]]:
    """The null-model control's plans: ``plan``'s file compiled against ``n`` copies of its model re-initialised
    with the architecture's own init (seeds ``seed .. seed + n - 1``), on the same dataset tokens. Claims that
    cannot compile on a copy are listed in its ``not_applicable``; a model that cannot be re-initialised raises
    a :class:`~circuitcheck.errors.ModelLoadError`."""
    base = plan.base if plan.base is not None else plan.path.resolve().parent
    out = []
    for i in range(n):
        null = reinitialised(plan.loaded, seed + i)
        out.append((seed + i, compile_against(plan.spec, plan.source_map, plan.path, null, plan.batch, base,
                                              skip_inapplicable=True, source_sha256=plan.source_sha256)))
    return out
