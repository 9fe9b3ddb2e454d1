"""What a claim compiles against: the model, the dataset, the named selections, and the claim's place in the file.

It sits in ``plan/``, below the claim kinds that receive it and beside the orchestration
(:mod:`circuitcheck.plan.compile`) that builds one per claim, so neither imports the other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from circuitcheck.data.batch import TokenBatch
from circuitcheck.errors import PlanError
from circuitcheck.metrics import Metric, metrics
from circuitcheck.plan.circuits import CompiledCircuit
from circuitcheck.plan.positions import scored_mask
from circuitcheck.spec.components import Head
from circuitcheck.spec.warnings import ClaimWarning

if TYPE_CHECKING:
    import torch


@dataclass
class CompileContext:
    """What a claim compiles against. ``path`` is the claim's place in the file."""

    model: Any
    batch: TokenBatch
    masks: dict[str, torch.Tensor]
    inputs: dict[str, torch.Tensor]
    path: tuple[str | int, ...]
    card: dict[str, Any] = field(default_factory=dict)
    base_dir: Path | None = None
    circuits: dict[str, CompiledCircuit] = field(default_factory=dict)
    """The file's circuits, compiled against the model (claims name them with a ``CircuitRef`` field)."""
    warnings: list[ClaimWarning] = field(default_factory=list)
    """Numbers that cannot mean anything, found while compiling (:mod:`circuitcheck.spec.warnings`); the
    file's claims share one list, which becomes :attr:`circuitcheck.plan.compile.FilePlan.warnings`."""

    def warn(self, warning: ClaimWarning | None) -> None:
        """Keep ``warning`` (None: nothing to warn about) for the terminal, the reports and ``explain``."""
        if warning is not None:
            self.warnings.append(warning)

    def circuit(self, name: str, field: str = "circuit") -> CompiledCircuit:
        """The compiled circuit ``name``, refused if the file does not define it."""
        if name not in self.circuits:
            known = ", ".join(sorted(self.circuits)) or "none yet"
            raise PlanError(self.path + (field,), f"unknown circuit {name!r}",
                            f"define it under 'circuits:' (known: {known})")
        return self.circuits[name]

    def head(self, layer: int, head: int, at: tuple[str | int, ...] = ()) -> None:
        """Refuse a layer or head the model does not have; ``at`` is the spec field holding them."""
        cfg = self.model.cfg
        if not 0 <= layer < cfg.n_layers:
            raise PlanError(
                self.path + at + ("layer",),
                f"layer {layer} is out of range: the model has {cfg.n_layers}",
                f"use 0..{cfg.n_layers - 1}",
            )
        if not 0 <= head < cfg.n_heads:
            raise PlanError(
                self.path + at + ("head",),
                f"head {head} is out of range: layer {layer} has {cfg.n_heads}",
                f"use 0..{cfg.n_heads - 1}",
            )

    def head_ref(self, ref: Head, field: str) -> tuple[int, int]:
        """``(layer, head)`` of the spec field ``field``, refused if the model does not have them."""
        self.head(ref.layer, ref.head, (field,))
        return ref.layer, ref.head

    def scored(self, selection: str, field: str = "positions") -> torch.Tensor:
        return scored_mask(self.masks, selection, self.batch, self.path + (field,))

    def selection(self, name: str, field: str) -> str:
        if name not in self.masks:
            known = ", ".join(sorted(self.masks))
            raise PlanError(
                self.path + (field,),
                f"unknown position selection {name!r}",
                f"define it under 'positions:' (known: {known})",
            )
        return name

    def metric(self, name: str, field: str = "metric") -> Metric:
        if name not in metrics:
            raise PlanError(
                self.path + (field,), f"unknown metric {name!r}", f"use one of: {', '.join(metrics.names())}"
            )
        return metrics.get(name)
