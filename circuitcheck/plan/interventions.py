"""The frozen plan: what each claim runs, as data, before any forward pass."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from circuitcheck.data.batch import TokenBatch
from circuitcheck.metrics.registry import Metric
from circuitcheck.plan.components import HookSite
from circuitcheck.spec.circuits import Edge
from circuitcheck.stats import SequenceStats

if TYPE_CHECKING:  # tensors appear in annotations only: claim modules import this without torch
    import torch

Source = Literal["zero", "mean", "resample", "clean", "previous", "self", "uniform", "linear", "path"]
"""What an edited activation is replaced with: zeros; its per-position mean over the
dataset's clean run; the clean activation of another sequence (a seeded
derangement); the clean activation of the same sequence (patching); or, for an
attention pattern, a rule: all attention on the previous token, on the token itself,
or spread uniformly over the causal prefix; or ``linear``: a median-Jacobian linearisation of
the MLP fitted on the clean run (``fit`` positions), applied to this run's ``reads`` activation;
or ``path``: what the receiver at the edited hook computes when only a sender's
change reaches it (:class:`PathSpec`; path patching)."""

PATTERN_RULES = ("previous", "self", "uniform")

CLEAN = "clean"


@dataclass(frozen=True)
class PathSpec:
    """A sender's changed output, reaching one receiver only.

    The receiver reads the clean residual stream at ``resid`` plus the change in the
    sender's output when its ``hook_z`` takes ``source`` (zero/mean/resample) at
    ``sender_at``; every other component keeps its clean value along the way.
    """

    sender: HookSite
    source: Source
    resid: str
    sender_at: str
    seed: int | None = None

    def __str__(self) -> str:
        seed = f" (seed {self.seed})" if self.seed is not None else ""
        return f"{self.source}{seed} {self.sender} at '{self.sender_at}' via {self.resid}"


@dataclass(frozen=True)
class HookEdit:
    site: HookSite
    positions: str
    source: Source
    seed: int | None = None
    reads: str | None = None
    fit: str | None = None
    path: PathSpec | None = None
    jacobian: str = "median"
    """For linear edits: how the per-example Jacobians become one (median, mean, at_mean_input)."""

    def __str__(self) -> str:
        seed = f" (seed {self.seed})" if self.seed is not None else ""
        linear = (
            f" (of {self.reads}, {self.jacobian} Jacobian fitted at '{self.fit}')" if self.source == "linear" else ""
        )
        path = f" (only the path from {self.path})" if self.path is not None else ""
        return f"{self.source}{seed}{linear}{path} -> {self.site} at positions '{self.positions}'"


@dataclass(frozen=True)
class Variant:
    """One forward pass over the whole dataset: an input and the edits applied to it."""

    input: str = CLEAN
    edits: tuple[HookEdit, ...] = ()

    def describe(self) -> str:
        edits = "; ".join(map(str, self.edits)) or "no edits"
        return f"input '{self.input}': {edits}"


@dataclass(frozen=True)
class EdgeRun:
    """One forward pass over the whole dataset with only ``edges`` kept (an edge-level circuit): every
    removed edge carries its sender's ``method`` value (zero, mean, or resample with ``seed``) of the
    clean run. The engine runs these with :func:`circuitcheck.run.edges.run_circuits`, and self-checks
    that the full circuit of each ablation reproduces the model."""

    edges: frozenset[Edge]
    method: Literal["zero", "mean", "resample"]
    seed: int | None = None

    def describe(self) -> str:
        seed = f" (seed {self.seed})" if self.seed is not None else ""
        return f"{len(self.edges)} edge(s) kept, the others {self.method}{seed}-ablated"


@dataclass(frozen=True)
class RandomCircuits:
    """A claim's estimate against ``n`` random circuits of the same size: their ``mean`` estimate, and
    the p-value of a random circuit doing at least as well (Holm-corrected across a file by the verdict)."""

    n: int
    mean: float
    p_value: float

    def shown(self) -> dict[str, float | int]:
        """The report's details keys for these numbers."""
        return {"random_n": self.n, "random_mean": self.mean, "p_value": self.p_value}


MEASUREMENT_NEEDS_UNCERTAINTY = (
    "Measurement({estimate!r}, ...) says nothing about its uncertainty: give stats=SequenceStats(...) "
    "(per-sequence totals; the verdict bootstraps the interval from them) or exact=True (a reading with no "
    "sampling uncertainty, e.g. from the weights; the interval is the estimate itself)"
)
MEASUREMENT_BOTH = (
    "Measurement({estimate!r}, ...) has stats and exact=True: a bootstrapped estimate is not exact; "
    "drop exact=True, or drop stats if the reading has no sampling uncertainty"
)


@dataclass(frozen=True)
class Measurement:
    """What a claim found: the headline estimate plus the numbers behind it.

    ``details`` are shown in reports only; the verdict reads the typed fields. Every measurement
    says how uncertain it is: ``stats`` (per-sequence totals, bootstrapped by the verdict) or
    ``exact=True`` (nothing was sampled, e.g. a reading of the weights).
    """

    estimate: float
    found: str
    details: dict[str, Any] = field(default_factory=dict)
    stats: SequenceStats | None = None
    per_example: torch.Tensor | None = None
    """Per-example scores on the estimate's scale, for worst-case floors."""
    n_examples: int | None = None
    """Examples scored; an inconclusive verdict uses it to say how many would resolve the interval."""
    random: RandomCircuits | None = None
    """The estimate against random circuits of the same size (claims with a ``random_baseline``)."""
    exact: bool = False
    """True for a reading with no sampling uncertainty (no ``stats``): its interval is the estimate itself."""

    def __post_init__(self) -> None:
        if self.stats is None and not self.exact:
            raise TypeError(MEASUREMENT_NEEDS_UNCERTAINTY.format(estimate=self.estimate))
        if self.stats is not None and self.exact:
            raise ValueError(MEASUREMENT_BOTH.format(estimate=self.estimate))


@dataclass(frozen=True, eq=False)
class Capture:
    """A clean activation a claim reads, reduced chunk by chunk as the clean run goes: ``reduce`` maps the
    hook's activation for ``c`` sequences to ``[c, ...]``, and ``out.captured[key]`` holds the
    reductions of every sequence, in order. Cheaper than capturing ``hook`` whole."""

    hook: str
    key: str
    reduce: Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True, eq=False)
class Read:
    """What a claim reads of one run's logits: ``metric`` at ``mask``'s positions, one value per
    selected position (row-major, as ``logits[mask]``). ``role`` names one of the claim's runs
    (a variant, an edge-level run or another model), or is ``None`` for the clean run.

    The engine reduces every pass to its reads before the next pass starts, so full logits
    ``[n_seqs, seq, vocab]`` never outlive their pass (:mod:`circuitcheck.run.readouts`)."""

    role: str | None
    metric: Metric
    mask: torch.Tensor

    @property
    def key(self) -> tuple[str | None, str, int]:
        return (self.role, self.metric.name, id(self.mask))


def reads(roles: Iterable[str | None], metrics: Iterable[Metric], mask: torch.Tensor) -> tuple[Read, ...]:
    """Every ``metric`` of every run in ``roles`` at ``mask`` (``None``: the clean run)."""
    metrics = tuple(metrics)
    return tuple(Read(role, m, mask) for role in roles for m in metrics)


UNDECLARED_READ = (
    "claim {claim!r} reads {metric} of {run} at a mask its plan did not declare: add "
    "Read({role!r}, metric, mask) to its ClaimPlan(reads=...) (the engine keeps only what claims declare)"
)
UNDECLARED_ROWS = (
    "claim {claim!r} reads the clean logits at a mask its plan did not declare: add the mask to "
    "ClaimPlan(clean_rows=...)"
)
NO_FULL_LOGITS = (
    "claim {claim!r} reads the full clean logits, which the engine keeps only for claims that ask: set "
    "ClaimPlan(needs_clean_logits=True), or declare reads=/clean_rows= to read them at selected positions"
)


@dataclass(frozen=True)
class ClaimOutputs:
    """Read access to what a claim's plan declared: its reads' values, the clean logits' rows at its
    ``clean_rows`` masks, the captured clean activations, and the full clean logits only when the plan
    set ``needs_clean_logits``."""

    batch: TokenBatch
    masks: dict[str, torch.Tensor]
    inputs: dict[str, torch.Tensor]
    captured: dict[str, torch.Tensor]
    values: dict[tuple[str | None, str, int], torch.Tensor] = field(default_factory=dict)
    """Per :attr:`Read.key`, the metric's values at the mask's positions."""
    rows: dict[int, torch.Tensor] = field(default_factory=dict)
    """Per ``id(mask)`` of the plan's ``clean_rows``, the clean logits there ``[n_selected, vocab]``."""
    full_clean_logits: torch.Tensor | None = None
    claim_id: str = ""

    def scores(self, role: str | None, metric: Metric, mask: torch.Tensor) -> torch.Tensor:
        """``metric`` of run ``role`` (``None``: the clean run) at ``mask``'s positions, flattened."""
        key = (role, metric.name, id(mask))
        if key not in self.values:
            run = "the clean run" if role is None else f"run {role!r}"
            raise KeyError(UNDECLARED_READ.format(claim=self.claim_id, metric=metric.name, run=run, role=role))
        return self.values[key]

    def clean_at(self, mask: torch.Tensor) -> torch.Tensor:
        """The clean logits at ``mask``'s positions ``[n_selected, vocab]`` (``clean_logits[mask]``)."""
        if id(mask) not in self.rows:
            raise KeyError(UNDECLARED_ROWS.format(claim=self.claim_id))
        return self.rows[id(mask)]

    @property
    def clean_logits(self) -> torch.Tensor:
        if self.full_clean_logits is None:
            raise KeyError(NO_FULL_LOGITS.format(claim=self.claim_id))
        return self.full_clean_logits


@dataclass(frozen=True, kw_only=True)
class ClaimPlan:
    """What one claim runs and how it scores the runs; built by name (``ClaimPlan(claim_id=..., ...)``).

    ``variants`` are the forward passes it needs beside the clean run, by role; ``captures`` the hooks
    whose clean activations ``score`` reads; ``reads`` what it reads of the runs' logits; ``describe``
    the lines ``circuitcheck explain`` shows.
    """

    claim_id: str
    kind: str
    variants: dict[str, Variant]
    captures: frozenset[str]
    describe: tuple[str, ...]
    score: Callable[[ClaimOutputs], Measurement]
    other_models: dict[str, Any] = field(default_factory=dict)
    """Role -> another model, run clean on the same inputs (for comparisons between models)."""
    depends_on: tuple[str, ...] = ()
    """Claims whose measurements this one combines (scored after them, with ``derive``)."""
    derive: Callable[[dict[str, Measurement]], Measurement] | None = None
    edge_runs: dict[str, EdgeRun] = field(default_factory=dict)
    """Role -> an edge-level circuit run (read by role, as variants are)."""
    reads: tuple[Read, ...] = ()
    """What ``score`` reads of the runs' logits (:meth:`ClaimOutputs.scores`)."""
    clean_rows: tuple[torch.Tensor, ...] = ()
    """Masks at which ``score`` reads the whole clean distribution (:meth:`ClaimOutputs.clean_at`)."""
    needs_clean_logits: bool = False
    """Whether ``score`` reads the full clean logits ``[n_seqs, seq, vocab]`` (kept for the whole run)."""
    reduced_captures: tuple[Capture, ...] = ()
    """Clean activations ``score`` reads reduced (``out.captured[capture.key]``)."""
    figure_captures: frozenset[str] = frozenset()
    """Hooks the HTML report would draw (attention patterns); captured whole only when the dataset fits one pass."""
