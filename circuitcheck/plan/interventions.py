"""The frozen plan: what each claim runs, as data, before any forward pass."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from circuitcheck.data.batch import TokenBatch
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


@dataclass(frozen=True)
class ClaimOutputs:
    """Read access to the runs a claim asked for."""

    batch: TokenBatch
    masks: dict[str, torch.Tensor]
    inputs: dict[str, torch.Tensor]
    clean_logits: torch.Tensor
    captured: dict[str, torch.Tensor]
    variant_logits: dict[str, torch.Tensor]

    def logits(self, variant: str) -> torch.Tensor:
        return self.variant_logits[variant]


@dataclass(frozen=True, kw_only=True)
class ClaimPlan:
    """What one claim runs and how it scores the runs; built by name (``ClaimPlan(claim_id=..., ...)``).

    ``variants`` are the forward passes it needs beside the clean run, by role; ``captures`` the hooks
    whose clean activations ``score`` reads; ``describe`` the lines ``circuitcheck explain`` shows.
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
    """Role -> an edge-level circuit run (its logits reach ``score`` by role, as variants' do)."""
