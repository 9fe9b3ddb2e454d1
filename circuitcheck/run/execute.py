"""Plan -> Result: run a compiled file's variants in shared batched passes, then score."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch

from circuitcheck.errors import SelfCheckError
from circuitcheck.plan.compile import FilePlan
from circuitcheck.plan.components import HookSite, available_hooks, complement, model_components, resolve_components
from circuitcheck.plan.interventions import CLEAN, ClaimOutputs, EdgeRun, HookEdit, Measurement, Variant
from circuitcheck.plan.positions import ALL
from circuitcheck.run.edges import FULL_CIRCUIT_ATOL, EdgeAblation, check_full_circuit, run_circuits
from circuitcheck.run.engine import (
    DEFAULT_MAX_ROWS,
    EngineInputs,
    Replacements,
    clean_run,
    counted_hooks,
    run_variants,
)
from circuitcheck.run.resume import resume_hooks

IDENTITY_ATOL = 1e-5


@dataclass(frozen=True)
class SelfCheck:
    name: str
    passed: bool
    detail: str


@dataclass(frozen=True)
class ClaimResult:
    claim_id: str
    measurement: Measurement
    seconds: float


@dataclass(frozen=True)
class FileResult:
    plan: FilePlan
    claims: tuple[ClaimResult, ...]
    self_checks: tuple[SelfCheck, ...]
    n_forward_rows: int
    seconds: float
    timings: dict[str, float] = field(default_factory=dict)
    captured: dict[str, torch.Tensor] = field(default_factory=dict)
    """The clean activations claims asked to capture (e.g. attention patterns), for reports."""


def _identity_variant(variants: list[Variant]) -> Variant:
    """Clean activations patched into the clean run at every hook any claim edits."""
    sites = sorted({e.site for v in variants for e in v.edits}) or [HookSite("hook_embed")]
    return Variant(edits=tuple(HookEdit(s, ALL, "clean") for s in sites))


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max()) if a.numel() else 0.0


def _check_finite(name: str, logits: torch.Tensor, model: Any = None, tokens: torch.Tensor | None = None) -> None:
    bad = ~torch.isfinite(logits)
    if bad.any():
        seq, pos = (int(x) for x in bad.nonzero()[0][:2])
        where = ""
        if model is not None and tokens is not None:
            where = f"; first non-finite activation at hook {first_nonfinite_hook(model, tokens[seq : seq + 1])!r}"
        raise SelfCheckError(f"non-finite logits in run '{name}' at sequence {seq}, position {pos}{where}")


def first_nonfinite_hook(model: Any, tokens: torch.Tensor) -> str | None:
    """Replay one sequence, watching every hook in forward order, to name where NaN/inf appear."""
    seen: list[str] = []

    def watch(name: str) -> Any:
        def check(act: torch.Tensor) -> None:
            if isinstance(act, torch.Tensor) and act.is_floating_point() and not torch.isfinite(act).all():
                seen.append(name)

        return check

    with counted_hooks(model, {name: watch(name) for name in available_hooks(model)}), torch.no_grad():
        model(tokens)
    return seen[0] if seen else None


class PassCounter:
    """Counts forward passes as they finish and tells ``progress`` at most every ``every`` seconds.

    A run can be thousands of small passes (``--max-rows 1``: one per sequence and variant); a
    progress line that only names the step looks hung. Every pass, from the tokens or resumed from
    the cache, ends in the unembedding, so one forward hook there counts them all."""

    def __init__(self, progress: Callable[[str], None], every: float = 0.2) -> None:
        self.progress = progress
        self.every = every
        self.stage = ""
        self.passes = 0
        self.rows = 0
        self._last = 0.0

    def enter(self, stage: str) -> None:
        self.stage = stage
        self._tell()

    def count(self, module: Any, args: Any, out: Any) -> None:
        self.passes += 1
        self.rows += int(out.shape[0])
        if time.perf_counter() - self._last >= self.every:
            self._tell()

    def _tell(self) -> None:
        self._last = time.perf_counter()
        self.progress(f"{self.stage}: {self.passes} forward passes, {self.rows} rows so far")


@contextmanager
def counting_passes(model: Any, progress: Callable[[str], None] | None) -> Iterator[PassCounter]:
    counter = PassCounter(progress or (lambda _: None))
    handle = model.unembed.register_forward_hook(counter.count) if progress is not None else None
    try:
        yield counter
    finally:
        if handle is not None:
            handle.remove()


def run_file(
    plan: FilePlan, max_rows: int = DEFAULT_MAX_ROWS, resume: bool = True, progress: Callable[[str], None] | None = None
) -> FileResult:
    """Run every variant the plan's claims need, self-check, and score; ``progress`` hears what the
    run is doing (a stage and a count of forward passes) a few times a second."""
    start = time.perf_counter()
    runs = _build_runs(plan)
    ran = _run_all(plan, runs, max_rows, resume, progress)
    checks = _self_checks(runs, ran)
    edge_logits, edge_checks = _run_edges(plan, max_rows, ran.clean_logits)
    checks += edge_checks
    results = _score_claims(plan, ran, max_rows, edge_logits)
    rows = len(plan.batch.tokens) * (len(runs.variants) + 1)  # + 1: the clean run
    captured = {hook: ran.cache[hook] for claim in plan.claims for hook in claim.captures}
    return FileResult(plan, tuple(results), checks, rows, time.perf_counter() - start, ran.timings, captured)


@dataclass(frozen=True)
class _Runs:
    """What ``run_file`` runs: the claims' variants and the self-checks' (in one list, since a claim's
    variant may equal a check's), and the clean activations to capture."""

    variants: list[Variant]
    identity: Variant
    """Clean activations patched into the clean run at every edited hook."""
    noop: Variant
    """No edit at all, stacked with the others."""
    empty: Variant
    """Every component mean-ablated (the empty circuit)."""
    left_when_keeping_all: list[HookSite]
    """Sites that keeping every component would still ablate (should be none)."""
    capture: set[str]


def _build_runs(plan: FilePlan) -> _Runs:
    model = plan.loaded.model
    unique: dict[Variant, int] = {}
    for claim in plan.claims:
        for variant in claim.variants.values():
            unique.setdefault(variant, len(unique))
    identity = _identity_variant(list(unique))
    noop = Variant()
    everything = resolve_components(model, model_components(model), ())
    empty = Variant(edits=tuple(HookEdit(s, ALL, "mean") for s in complement(model, [])))
    variants = list(dict.fromkeys([*unique, empty, identity, noop]))
    edits = [e for v in variants for e in v.edits]
    capture = {c for claim in plan.claims for c in claim.captures}
    capture |= {e.site.hook for e in edits} | {e.reads for e in edits if e.reads}
    capture |= {h for e in edits if e.path for h in (e.path.resid, e.path.sender.hook)}
    capture |= resume_hooks(model)
    return _Runs(variants, identity, noop, empty, complement(model, everything), capture)


@dataclass(frozen=True)
class _Ran:
    clean_logits: torch.Tensor
    cache: dict[str, torch.Tensor]
    """The clean run's captured activations."""
    logits: dict[Variant, torch.Tensor]
    timings: dict[str, float]


def _run_all(
    plan: FilePlan, runs: _Runs, max_rows: int, resume: bool, progress: Callable[[str], None] | None
) -> _Ran:
    """The clean run, then every variant in the engine's stacked passes."""
    model = plan.loaded.model
    with torch.no_grad(), counting_passes(model, progress) as passes:
        t0 = time.perf_counter()
        passes.enter(f"clean run of {len(plan.batch.tokens)} sequences")
        clean_logits, cache = clean_run(model, plan.batch.tokens, runs.capture, max_rows)
        _check_finite(CLEAN, clean_logits, model, plan.batch.tokens)
        data = EngineInputs(plan.inputs, plan.masks)
        t1 = time.perf_counter()
        passes.enter(f"{len(runs.variants)} variant runs, at most {max_rows} rows a pass")
        repl = Replacements(cache, model, plan.masks)
        outs = run_variants(model, runs.variants, data, repl, max_rows, resume=resume)
        t2 = time.perf_counter()
        passes.enter("scoring claims")
    timings = {"clean_seconds": t1 - t0, "variants_seconds": t2 - t1}
    return _Ran(clean_logits, cache, dict(zip(runs.variants, outs, strict=True)), timings)


def _self_checks(runs: _Runs, ran: _Ran) -> tuple[SelfCheck, ...]:
    """The run's self-checks; raises ``SelfCheckError`` naming every one that failed."""
    for variant, logits in ran.logits.items():
        _check_finite(variant.describe(), logits)
    blank, left = ran.logits[runs.empty], runs.left_when_keeping_all
    checks = (
        SelfCheck("hooks_fired", True, f"every hook fired in {len(runs.variants) + 1} variant runs"),
        _compare(
            "identity_patch",
            "clean activations patched at every edited hook reproduce the clean logits",
            ran.logits[runs.identity],
            ran.clean_logits,
        ),
        _compare(
            "batched_noop",
            "an unedited variant stacked with the others reproduces the clean run",
            ran.logits[runs.noop],
            ran.clean_logits,
        ),
        SelfCheck("finite", True, "all logits finite"),
        SelfCheck(
            "full_circuit",
            not left,
            f"keeping every component ablates nothing ({len(left)} site(s) left to ablate); "
            "the unedited run is the model",
        ),
        _compare(
            "empty_circuit",
            "with every component mean-ablated the output is the same for every sequence",
            blank,
            blank[:1].expand_as(blank),
            atol=1e-4,
        ),
    )
    failed = [c for c in checks if not c.passed]
    if failed:
        raise SelfCheckError("; ".join(f"self-check {c.name} failed: {c.detail}" for c in failed))
    return checks


def _other_models_logits(plan: FilePlan, max_rows: int) -> dict[int, torch.Tensor]:
    """The clean logits of every other model a claim compares with, by ``id`` of the model."""
    others: dict[int, torch.Tensor] = {}
    with torch.no_grad():
        for claim in plan.claims:
            for other in claim.other_models.values():
                if id(other) not in others:
                    others[id(other)] = clean_run(other, plan.batch.tokens, set(), max_rows)[0]
                    _check_finite("other model", others[id(other)], other, plan.batch.tokens)
    return others


def _run_edges(
    plan: FilePlan, max_rows: int, clean_logits: torch.Tensor
) -> tuple[dict[EdgeRun, torch.Tensor], tuple[SelfCheck, ...]]:
    """Every claim's edge-level circuit runs, stacked per ablation, and for each ablation the
    self-check that the full circuit reproduces the model (none when no claim runs edges)."""
    model, tokens = plan.loaded.model, plan.batch.tokens
    by_ablation: dict[tuple[str, int | None], list[EdgeRun]] = {}
    for claim in plan.claims:
        for edge_run in claim.edge_runs.values():
            group = by_ablation.setdefault((edge_run.method, edge_run.seed), [])
            if edge_run not in group:
                group.append(edge_run)
    logits: dict[EdgeRun, torch.Tensor] = {}
    checks = []
    for (method, seed), group in by_ablation.items():
        ablation = EdgeAblation(method, seed)  # type: ignore[arg-type]
        diff = check_full_circuit(model, tokens, ablation, max_rows=max_rows, clean_logits=clean_logits)
        outs = run_circuits(model, tokens, [r.edges for r in group], ablation, max_rows=max_rows)
        for edge_run, out in zip(group, outs, strict=True):
            _check_finite(f"edge run: {edge_run.describe()}", out)
            logits[edge_run] = out
        shown = f"{method}" + (f" (seed {seed})" if seed is not None else "")
        checks.append(SelfCheck(
            f"full_edge_circuit_{method}" + (f"_{seed}" if seed is not None else ""), True,
            f"the circuit of every edge, {shown}-ablating none, reproduces the model: max |diff| = {diff:.2e} "
            f"(tolerance {FULL_CIRCUIT_ATOL:g} x the largest |logit|); {len(group)} edge-level circuit run(s)",
        ))
    return logits, tuple(checks)


def _score_claims(
    plan: FilePlan, ran: _Ran, max_rows: int, edge_logits: dict[EdgeRun, torch.Tensor] | None = None
) -> list[ClaimResult]:
    """Every claim's measurement, in the plan's order; derived claims after the ones they read."""
    others = _other_models_logits(plan, max_rows)
    measured: dict[str, ClaimResult] = {}
    for claim in sorted(plan.claims, key=lambda c: bool(c.depends_on)):
        t = time.perf_counter()
        if claim.derive is not None:
            measurement = claim.derive({d: measured[d].measurement for d in claim.depends_on})
        else:
            out = ClaimOutputs(
                batch=plan.batch,
                masks=plan.masks,
                inputs=plan.inputs,
                clean_logits=ran.clean_logits,
                captured=ran.cache,
                variant_logits={role: ran.logits[v] for role, v in claim.variants.items()}
                | {role: others[id(m)] for role, m in claim.other_models.items()}
                | {role: (edge_logits or {})[r] for role, r in claim.edge_runs.items()},
            )
            measurement = claim.score(out)
        measured[claim.claim_id] = ClaimResult(claim.claim_id, measurement, time.perf_counter() - t)
    return [measured[c.claim_id] for c in plan.claims]


def _compare(name: str, what: str, got: torch.Tensor, want: torch.Tensor, atol: float = IDENTITY_ATOL) -> SelfCheck:
    diff = _max_diff(got, want)
    return SelfCheck(name, diff <= atol, f"{what}: max |diff| = {diff:.2e} (tolerance {atol:g})")
