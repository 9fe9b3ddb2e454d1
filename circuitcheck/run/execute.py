"""Plan -> Result: run a compiled file's variants in shared batched passes, then score."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

import torch

from circuitcheck.errors import CircuitcheckError, SelfCheckError
from circuitcheck.plan.circuits import ModelShape
from circuitcheck.plan.compile import FilePlan
from circuitcheck.plan.components import HookSite, available_hooks, complement, model_components, resolve_components
from circuitcheck.plan.interventions import CLEAN, ClaimOutputs, ClaimPlan, EdgeRun, HookEdit, Measurement, Variant
from circuitcheck.plan.positions import ALL
from circuitcheck.run.clean_pass import CleanCaptures, clean_pass, default_budget_bytes, plan_memory
from circuitcheck.run.edges import FULL_CIRCUIT_ATOL, EdgeAblation, EdgeLayout, run_circuits
from circuitcheck.run.engine import (
    DEFAULT_MAX_ROWS,
    EngineInputs,
    Replacements,
    clean_run,
    counted_hooks,
    run_variants,
)
from circuitcheck.run.readouts import Readouts, Want, input_target
from circuitcheck.run.resume import hooks_to_resume
from circuitcheck.zoo.options import self_check_scale

IDENTITY_ATOL = 1e-5
EMPTY_CIRCUIT_ATOL = 1e-4
"""The self-check tolerances in float32. In another dtype each is multiplied by
:func:`circuitcheck.zoo.options.self_check_scale` (the ratio of the dtypes' rows in
:data:`circuitcheck.zoo.options.LOGIT_TOLERANCE`):

| dtype    | identity / no-op | empty circuit | full edge circuit (x the largest logit) |
|----------|------------------|---------------|-----------------------------------------|
| float32  | 1e-5             | 1e-4          | FULL_CIRCUIT_ATOL                       |
| float16  | 1e-3             | 1e-2          | 100 x FULL_CIRCUIT_ATOL                 |
| bfloat16 | 3e-3             | 3e-2          | 300 x FULL_CIRCUIT_ATOL                 |
"""


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
    # a whole hook (head None) and one head's slice of it may both be edited: order by (hook, head) with None first
    sites = sorted(
        {e.site for v in variants for e in v.edits}, key=lambda s: (s.hook, -1 if s.head is None else s.head)
    ) or [HookSite("hook_embed")]
    return Variant(edits=tuple(HookEdit(s, ALL, "clean") for s in sites))


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max()) if a.numel() else 0.0


def _check_finite(sink: Readouts, describe: Callable[[Hashable], str], model: Any, tokens: torch.Tensor) -> None:
    """Raise on the first run whose logits were NaN or infinite, naming where (for the clean run: the
    first hook whose activation is not finite)."""
    if sink.non_finite is None:
        return
    k, seq, pos = sink.non_finite
    where = ""
    if k == input_target(CLEAN):
        where = f"; first non-finite activation at hook {first_nonfinite_hook(model, tokens[seq : seq + 1])!r}"
    raise SelfCheckError(f"non-finite logits in run '{describe(k)}' at sequence {seq}, position {pos}{where}")


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
    plan: FilePlan,
    max_rows: int = DEFAULT_MAX_ROWS,
    resume: bool = True,
    progress: Callable[[str], None] | None = None,
    memory_budget: int | None = None,
) -> FileResult:
    """Run every variant the plan's claims need, self-check, and score; ``progress`` hears what the
    run is doing (a stage and a count of forward passes) a few times a second.

    Each pass's logits are reduced to what the claims read before the next pass starts
    (:mod:`circuitcheck.run.readouts`): what a run keeps is scalars per run and scored position, the
    clean logits' rows where a metric reads the clean distribution, and the first ``max_rows``
    sequences' clean logits for the self-checks. ``max_rows`` is lowered so that one call's logits
    stay within ``LOGIT_BYTES_PER_CALL``; the clean activations kept must fit ``memory_budget`` bytes
    (default: :func:`circuitcheck.run.clean_pass.default_budget_bytes`; see
    :mod:`circuitcheck.run.clean_pass`)."""
    start = time.perf_counter()
    _edges_need_float32(plan)
    max_rows = rows_per_call(plan, max_rows)
    runs = _build_runs(plan, max_rows)
    budget = default_budget_bytes() if memory_budget is None else memory_budget
    memory = plan_memory(plan.loaded.model, plan.batch.tokens, runs.captures.full, runs.resume_hooks, budget)
    sink = _readouts(plan, runs, max_rows)
    ran = _run_all(plan, runs, max_rows, resume and memory.resume, progress, sink)
    checks = _bridge_check(plan) + _self_checks(runs, sink, self_check_scale(plan.loaded.dtype))
    checks += _run_edges(plan, max_rows, sink)
    _run_other_models(plan, max_rows, sink)
    _check_finite(sink, lambda k: _describe(runs, k), plan.loaded.model, plan.batch.tokens)
    results = _score_claims(plan, runs, sink, ran.cache)
    rows = len(plan.batch.tokens) * (len(runs.variants) + 1)  # + 1: the clean run
    captured = {hook: ran.cache[hook] for claim in plan.claims for hook in claim.captures | claim.figure_captures
                if hook in ran.cache}
    timings = ran.timings | {"rows_per_call": max_rows, "resumed": float(resume and memory.resume),
                             "cache_required_bytes": memory.required_bytes, "cache_resume_bytes": memory.resume_bytes}
    return FileResult(plan, tuple(results), checks, rows, time.perf_counter() - start, timings, captured)


LOGIT_BYTES_PER_CALL = 256 * 2**20
"""The most logits one forward call may produce: ``max_rows`` is lowered to fit (GPT-2's vocabulary
makes a 15-token row 3 MB, so 4096 rows would be 12 GB in one call; the zoo's rows are 15 KB)."""


def rows_per_call(plan: FilePlan, max_rows: int) -> int:
    """``max_rows``, lowered so that one call's float32 logits fit ``LOGIT_BYTES_PER_CALL``."""
    row = int(plan.batch.tokens.shape[1]) * int(plan.loaded.model.cfg.d_vocab) * 4
    return max(1, min(max_rows, LOGIT_BYTES_PER_CALL // row))


def _describe(runs: _Runs, k: Hashable) -> str:
    if isinstance(k, int):
        return runs.variants[k].describe()
    if isinstance(k, tuple) and k[0] == "window":
        return runs.on_window[k[1]].describe()
    if isinstance(k, tuple) and k[0] == "input":
        return str(k[1])
    if isinstance(k, tuple) and k[0] == "edge":
        return f"edge run: {k[1].describe()}"
    return "other model" if isinstance(k, tuple) and k[0] == "model" else str(k)


def _target(claim: ClaimPlan, role: str | None, runs: _Runs) -> Hashable:
    """The sink's name for the run a claim calls ``role``."""
    if role is None:
        return input_target(CLEAN)
    if role in claim.variants:
        return runs.index[claim.variants[role]]
    if role in claim.edge_runs:
        return ("edge", claim.edge_runs[role])
    if role in claim.other_models:
        return ("model", id(claim.other_models[role]))
    raise KeyError(f"claim {claim.claim_id!r} reads run {role!r}, which is none of its variants, edge runs or models")


def _readouts(plan: FilePlan, runs: _Runs, max_rows: int) -> Readouts:
    """The sink of a file's runs: every claim's reads, and the same reads of each variant's input (a
    variant that starts inside the last block keeps its input's values at the positions it does not edit)."""
    wants: dict[Hashable, dict[tuple[str, int], Want]] = defaultdict(dict)
    for claim in plan.claims:
        for read in claim.reads:
            want = Want(read.metric, read.mask)
            target = _target(claim, read.role, runs)
            wants[target][want.key] = want
            if isinstance(target, int):
                wants[input_target(runs.variants[target].input)][want.key] = want
    rows = [m for claim in plan.claims for m in claim.clean_rows]
    full = any(claim.needs_clean_logits for claim in plan.claims)
    window = min(len(plan.batch.tokens), max_rows)
    sink = Readouts(plan.batch.next_token, {k: list(v.values()) for k, v in wants.items()}, rows, window, full,
                    counterfactual=plan.batch.counterfactual)
    for variant in (runs.identity, runs.noop):
        sink.compare_with_clean(runs.key(variant))
    sink.check_constant(runs.key(runs.empty))
    return sink


@dataclass(frozen=True)
class _Runs:
    """What ``run_file`` runs: the claims' variants and the self-checks' (in one list, since a claim's
    variant may equal a check's), and what the clean pass keeps.

    When the dataset is longer than the window (``max_rows`` sequences), the identity and empty-circuit
    checks run on the window only (``on_window``), so that the run need not keep every sequence's clean
    activations at every hook just to check itself."""

    variants: list[Variant]
    identity: Variant
    """Clean activations patched into the clean run at every edited hook."""
    noop: Variant
    """No edit at all, stacked with the others."""
    empty: Variant
    """Every component mean-ablated (the empty circuit)."""
    left_when_keeping_all: list[HookSite]
    """Sites that keeping every component would still ablate (should be none)."""
    captures: CleanCaptures
    resume_hooks: set[str]
    """The cached activations the variants would resume from (kept if the memory budget allows)."""
    on_window: list[Variant]
    window: int

    @cached_property
    def index(self) -> dict[Variant, int]:
        """Each variant's run number (read once per claim read: kept)."""
        return {v: k for k, v in enumerate(self.variants)}

    def key(self, variant: Variant) -> Hashable:
        """The sink's name for a variant's run."""
        if variant in self.on_window:
            return ("window", self.on_window.index(variant))
        return self.index[variant]


def _build_runs(plan: FilePlan, max_rows: int) -> _Runs:
    model = plan.loaded.model
    unique: dict[Variant, int] = {}
    for claim in plan.claims:
        for variant in claim.variants.values():
            unique.setdefault(variant, len(unique))
    identity = _identity_variant(list(unique))
    noop = Variant()
    everything = resolve_components(model, model_components(model), ())
    empty = Variant(edits=tuple(HookEdit(s, ALL, "mean") for s in complement(model, [])))
    window = min(len(plan.batch.tokens), max_rows)
    split = window < len(plan.batch.tokens)
    on_window = [v for v in (empty, identity) if v not in unique] if split else []
    variants = list(dict.fromkeys([*unique, *(v for v in (empty, identity) if v not in on_window), noop]))
    edits = [e for v in variants for e in v.edits]
    full = {c for claim in plan.claims for c in claim.captures}
    full |= {e.reads for e in edits if e.reads}
    full |= {h for e in edits if e.path for h in (e.path.resid, e.path.sender.hook)}
    by_value = {e.site.hook for e in edits if e.source in ("zero", "mean")} if split else set()
    full |= {e.site.hook for e in edits} - by_value
    if not split:  # attention patterns for the HTML report, when the dataset fits one pass
        full |= {h for claim in plan.claims for h in claim.figure_captures}
    reduced = tuple(c for claim in plan.claims for c in claim.reduced_captures)
    captures = CleanCaptures(full, {e.site.hook for v in on_window for e in v.edits}, by_value, reduced)
    resume = hooks_to_resume(model, [v for v in variants if v.input == CLEAN])
    return _Runs(variants, identity, noop, empty, complement(model, everything), captures, resume, on_window, window)


@dataclass(frozen=True)
class _Ran:
    cache: dict[str, torch.Tensor]
    """The clean run's captured activations."""
    timings: dict[str, float]


def _run_all(
    plan: FilePlan,
    runs: _Runs,
    max_rows: int,
    resume: bool,
    progress: Callable[[str], None] | None,
    sink: Readouts,
) -> _Ran:
    """The clean run, then every variant in the engine's stacked passes, all into ``sink``."""
    model = plan.loaded.model
    with torch.no_grad(), counting_passes(model, progress) as passes:
        t0 = time.perf_counter()
        passes.enter(f"clean run of {len(plan.batch.tokens)} sequences")
        captures = runs.captures
        if resume:
            captures = replace(captures, full=captures.full | runs.resume_hooks)
        clean = clean_pass(model, plan.batch.tokens, captures, max_rows, runs.window, sink.input_chunks(CLEAN))
        _check_finite(sink, lambda k: _describe(runs, k), model, plan.batch.tokens)
        data = EngineInputs(plan.inputs, plan.masks)
        t1 = time.perf_counter()
        passes.enter(f"{len(runs.variants)} variant runs, at most {max_rows} rows a pass")
        repl = Replacements(clean.acts, model, plan.masks, clean.means)
        run_variants(model, runs.variants, data, repl, max_rows, resume=resume, sink=sink)
        if runs.on_window:
            passes.enter(f"{len(runs.on_window)} self-check runs on the first {runs.window} sequences")
            _run_on_window(plan, runs, clean.window_acts, max_rows, sink)
        t2 = time.perf_counter()
        passes.enter("scoring claims")
    timings = {"clean_seconds": t1 - t0, "variants_seconds": t2 - t1}
    return _Ran(clean.acts, timings)


class _Renamed:
    """A sink that files run ``k`` under ``names[k]`` (the self-checks' runs on the window)."""

    def __init__(self, sink: Readouts, names: list[Hashable]) -> None:
        self.sink, self.names = sink, dict(enumerate(names))
        self.base_from_cache = sink.base_from_cache
        self.like_input, self.input_head = sink.like_input, sink.input_head

    def chunk(self, k: Hashable, first: int, logits: torch.Tensor) -> None:
        self.sink.chunk(self.names[k], first, logits)  # type: ignore[index]

    def position(self, k: Hashable, first: int, position: int, logits: torch.Tensor) -> None:
        self.sink.position(self.names[k], first, position, logits)  # type: ignore[index]

    def positions(self, k: Hashable, first: int, positions: torch.Tensor, logits: torch.Tensor) -> None:
        self.sink.positions(self.names[k], first, positions, logits)  # type: ignore[index]

    def needed_positions(self, k: Hashable) -> torch.Tensor | None:
        return self.sink.needed_positions(self.names[k])  # type: ignore[index]

    def input_chunks(self, name: str) -> None:
        return None


def _run_on_window(
    plan: FilePlan, runs: _Runs, window_acts: dict[str, torch.Tensor], max_rows: int, sink: Readouts
) -> None:
    """The identity and empty-circuit checks on the first ``runs.window`` sequences, from the tokens."""
    w = runs.window
    data = EngineInputs({CLEAN: plan.batch.tokens[:w]}, {k: m[:w] for k, m in plan.masks.items()})
    repl = Replacements(window_acts, plan.loaded.model, data.masks)
    names = [runs.key(v) for v in runs.on_window]
    run_variants(plan.loaded.model, runs.on_window, data, repl, max_rows, resume=False, sink=_Renamed(sink, names))


def _edges_need_float32(plan: FilePlan) -> None:
    """Edge-level circuits (:mod:`circuitcheck.run.edges`) compute their replacements in float32 and do not
    cast them into a lower-precision model: refused before any pass rather than failing inside one."""
    edge_claims = [c.claim_id for c in plan.claims if c.edge_runs]
    if edge_claims and plan.loaded.dtype != "float32":
        raise CircuitcheckError(
            f"{plan.path}: claim(s) {', '.join(edge_claims)} run edge-level circuits, which run in float32 only; "
            f"the model is loaded in {plan.loaded.dtype}\n  fix: run with --dtype float32 (the default), or leave "
            "those claims out of a lower-precision run"
        )


def _bridge_check(plan: FilePlan) -> tuple[SelfCheck, ...]:
    """An HF model's load-time probe against its own forward (:mod:`circuitcheck.zoo.bridge_check`), as a
    self-check; a mismatch run anyway with ``--trust-bridge`` shows as failed, the run going on."""
    probe = plan.loaded.bridge_check
    if probe is None:
        return ()
    trusted = " (mismatch trusted with --trust-bridge)" if probe["trusted"] else ""
    return (SelfCheck(
        "bridge_matches_model", bool(probe["passed"]),
        f"the TransformerLens bridge reproduces transformers' own forward on {probe['probe']} ({probe['dtype']}): "
        f"max |diff| = {probe['max_abs_diff']:.2e} (tolerance {probe['tolerance']:.2g}){trusted}",
    ),)


def _self_checks(runs: _Runs, sink: Readouts, scale: float = 1.0) -> tuple[SelfCheck, ...]:
    """The run's self-checks, their tolerances ``scale`` x the float32 ones (a lower-precision dtype); raises
    ``SelfCheckError`` naming every one that failed."""
    window = f"over the first {sink.window} sequences"
    left = runs.left_when_keeping_all
    checks = (
        SelfCheck("hooks_fired", True, f"every hook fired in {len(runs.variants) + 1} variant runs"),
        _check(
            "identity_patch",
            f"clean activations patched at every edited hook reproduce the clean logits {window}",
            sink.against_clean[runs.key(runs.identity)],
            IDENTITY_ATOL * scale,
        ),
        _check(
            "batched_noop",
            f"an unedited variant stacked with the others reproduces the clean run {window}",
            sink.against_clean[runs.key(runs.noop)],
            IDENTITY_ATOL * scale,
        ),
        SelfCheck("finite", sink.non_finite is None, "all logits finite"),
        SelfCheck(
            "full_circuit",
            not left,
            f"keeping every component ablates nothing ({len(left)} site(s) left to ablate); "
            "the unedited run is the model",
        ),
        _check(
            "empty_circuit",
            "with every component mean-ablated the output is the same for every sequence",
            sink.constant[runs.key(runs.empty)],
            atol=EMPTY_CIRCUIT_ATOL * scale,
        ),
    )
    failed = [c for c in checks if not c.passed]
    if failed:
        raise SelfCheckError("; ".join(f"self-check {c.name} failed: {c.detail}" for c in failed))
    return checks


def _run_other_models(plan: FilePlan, max_rows: int, sink: Readouts) -> None:
    """The clean run of every other model a claim compares with, into ``sink`` as ``("model", id)``."""
    done: set[int] = set()
    with torch.no_grad():
        for claim in plan.claims:
            for other in claim.other_models.values():
                if id(other) not in done:
                    done.add(id(other))
                    clean_run(other, plan.batch.tokens, set(), max_rows, _into(sink, ("model", id(other))))


def _into(sink: Readouts, target: Hashable) -> Callable[[int, torch.Tensor], None]:
    def take(first: int, logits: torch.Tensor) -> None:
        sink.chunk(target, first, logits)

    return take


def _run_edges(plan: FilePlan, max_rows: int, sink: Readouts) -> tuple[SelfCheck, ...]:
    """Every claim's edge-level circuit runs, stacked per ablation, into ``sink`` as ``("edge", run)``;
    and for each ablation the self-check that the full circuit reproduces the model (none when no
    claim runs edges)."""
    model, tokens = plan.loaded.model, plan.batch.tokens
    by_ablation: dict[tuple[str, int | None], list[EdgeRun]] = {}
    for claim in plan.claims:
        for edge_run in claim.edge_runs.values():
            group = by_ablation.setdefault((edge_run.method, edge_run.seed), [])
            if edge_run not in group:
                group.append(edge_run)
    checks = []
    scale = max(1.0, float(sink.input_head(CLEAN, sink.window).abs().max())) if by_ablation else 1.0
    atol = FULL_CIRCUIT_ATOL * self_check_scale(plan.loaded.dtype)
    for (method, seed), group in by_ablation.items():
        ablation = EdgeAblation(method, seed)  # type: ignore[arg-type]
        full = ("edge-full", method, seed)
        sink.compare_with_clean(full)
        run_circuits(model, tokens, [EdgeLayout(ModelShape.of(model)).all_edges()], ablation, max_rows=max_rows,
                     sink=sink, keys=[full])
        diff = sink.against_clean[full]
        if diff > atol * scale:
            raise SelfCheckError(
                f"the full circuit does not reproduce the model ({method}-ablation): max |logit difference| "
                f"{diff:.2e} > {atol * scale:.2g} ({atol:g} x the largest |logit|); "
                "edge-level results on this model are invalid"
            )
        run_circuits(model, tokens, [r.edges for r in group], ablation, max_rows=max_rows, sink=sink,
                     keys=[("edge", r) for r in group])
        shown = f"{method}" + (f" (seed {seed})" if seed is not None else "")
        checks.append(SelfCheck(
            f"full_edge_circuit_{method}" + (f"_{seed}" if seed is not None else ""), True,
            f"the circuit of every edge, {shown}-ablating none, reproduces the model over the first {sink.window} "
            f"sequences: max |diff| = {diff:.2e} (tolerance {atol:g} x the largest |logit|); "
            f"{len(group)} edge-level circuit run(s)",
        ))
    return tuple(checks)


def _score_claims(plan: FilePlan, runs: _Runs, sink: Readouts, cache: dict[str, torch.Tensor]) -> list[ClaimResult]:
    """Every claim's measurement, in the plan's order; derived claims after the ones they read."""
    measured: dict[str, ClaimResult] = {}
    full_clean = sink.clean_logits()
    for claim in sorted(plan.claims, key=lambda c: bool(c.depends_on)):
        t = time.perf_counter()
        if claim.derive is not None:
            measurement = claim.derive({d: measured[d].measurement for d in claim.depends_on})
        else:
            out = ClaimOutputs(
                batch=plan.batch,
                masks=plan.masks,
                inputs=plan.inputs,
                captured=cache,
                values={r.key: sink.values[(_target(claim, r.role, runs), *Want(r.metric, r.mask).key)]
                        for r in claim.reads},
                rows={id(m): sink.rows[id(m)] for m in claim.clean_rows},
                full_clean_logits=full_clean if claim.needs_clean_logits else None,
                claim_id=claim.claim_id,
            )
            measurement = claim.score(out)
        measured[claim.claim_id] = ClaimResult(claim.claim_id, measurement, time.perf_counter() - t)
    return [measured[c.claim_id] for c in plan.claims]


def _check(name: str, what: str, diff: float, atol: float = IDENTITY_ATOL) -> SelfCheck:
    return SelfCheck(name, diff <= atol, f"{what}: max |diff| = {diff:.2e} (tolerance {atol:g})")
