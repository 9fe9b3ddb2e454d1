"""A patching sweep on the engine: one denoising variant per cell, every cell stacked into shared passes.

A cell is one site (a head's ``hook_z`` slice, a layer's ``hook_resid_pre`` or ``hook_mlp_out``) at one
position. Its variant is the corrupted run with the clean activation of that site written back at that
position only; the engine starts each pass at the patched layer (:mod:`circuitcheck.run.resume`) and
reduces every pass to the metric at the scored positions before the next starts (:class:`Readouts`), so
memory grows with cells x scored positions, not x vocabulary.

Per cell, as the ``activation_patching`` claim kind measures it::

    M_run = (sum of the metric over the scored positions of run) / (number of scored positions)
    effect = (M_patched - M_corrupted) / (M_clean - M_corrupted)      (fraction recovered)

and a percentile bootstrap over sequences (:meth:`circuitcheck.stats.SequenceStats.bootstrap`): every cell's
totals are drawn from the same resampled sequences, as one ``[n_seqs, n_cells]`` table.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch

from circuitcheck.errors import CircuitcheckError
from circuitcheck.metrics.registry import Metric
from circuitcheck.plan.components import HookSite, check_hook_name
from circuitcheck.plan.interventions import CLEAN, HookEdit, Variant
from circuitcheck.run.engine import DEFAULT_MAX_ROWS, EngineInputs, Replacements, clean_run, run_variants
from circuitcheck.run.execute import counting_passes
from circuitcheck.run.readouts import Readouts, Want, input_target
from circuitcheck.stats import SequenceStats, Totals, per_sequence, safe_ratio
from circuitcheck.verdict.judge import interval

Over = Literal["heads", "resid", "mlp"]
OVER: tuple[Over, ...] = ("heads", "resid", "mlp")

CORRUPTED = "sweep:corrupted"


def sites(model: Any, over: Over, layer: int) -> list[HookSite]:
    """The sites of one layer a sweep ``over`` patches."""
    if over == "heads":
        return [HookSite(f"blocks.{layer}.attn.hook_z", h) for h in range(int(model.cfg.n_heads))]
    if over == "resid":
        return [HookSite(f"blocks.{layer}.hook_resid_pre")]
    if model.cfg.attn_only:
        raise CircuitcheckError("--over mlp: the model is attention-only: it has no MLPs\n"
                                "  fix: sweep --over heads or --over resid")
    return [HookSite(f"blocks.{layer}.hook_mlp_out")]


def component_name(over: Over, layer: int, head: int | None) -> str:
    """How a hypothesis file's ``patch:`` names a cell's site."""
    if over == "heads":
        return f"{layer}.{head}"
    if over == "mlp":
        return f"mlp{layer}"
    return f"blocks.{layer}.hook_resid_pre"


def position_mask(n_seqs: int, seq: int, position: int) -> torch.Tensor:
    mask = torch.zeros(n_seqs, seq, dtype=torch.bool)
    mask[:, position] = True
    return mask


@dataclass(frozen=True)
class SweepValues:
    """The sweep's per-sequence metric sums: ``clean`` and ``corrupted`` ``[n_seqs]``, ``patched``
    ``[n_seqs, n_cells]``; ``n`` scored positions per sequence. Cells are ordered layer, then site (head),
    then position; ``cells[i] = (layer, head or None, position)``."""

    n: torch.Tensor
    clean: torch.Tensor
    corrupted: torch.Tensor
    patched: torch.Tensor
    cells: list[tuple[int, int | None, int]]
    n_variants: int
    """Variants the engine ran: the corrupted run, and one per cell at or before the last scored position."""

    def means(self) -> tuple[float, float, torch.Tensor]:
        """M_clean, M_corrupted, and M_patched per cell: the metric's mean over every scored position."""
        total = float(self.n.sum())
        return float(self.clean.sum()) / total, float(self.corrupted.sum()) / total, self.patched.sum(0) / total

    def stats(self) -> SequenceStats:
        return SequenceStats({"n": self.n, "clean": self.clean, "corrupted": self.corrupted,
                              "patched": self.patched}, fraction_recovered)


def fraction_recovered(t: Totals) -> torch.Tensor:
    """Per cell, ``(M_patched - M_corrupted) / (M_clean - M_corrupted)``; totals of one draw (``patched [k]``)
    or of ``R`` resamples (``n``, ``clean``, ``corrupted`` ``[R]``, ``patched [R, k]``)."""
    n = t["n"].unsqueeze(-1)
    clean, corrupted, patched = t["clean"].unsqueeze(-1) / n, t["corrupted"].unsqueeze(-1) / n, t["patched"] / n
    return safe_ratio(patched - corrupted, (clean - corrupted).expand_as(patched))


def sweep_values(
    model: Any,
    tokens: torch.Tensor,
    corrupted: torch.Tensor,
    next_token: torch.Tensor,
    over: Over,
    metric: Metric,
    mask: torch.Tensor,
    max_rows: int = DEFAULT_MAX_ROWS,
    progress: Callable[[str], None] | None = None,
    resume: bool = True,
    counterfactual: torch.Tensor | None = None,
) -> SweepValues:
    """Run every cell of the sweep ``over`` on the engine; ``metric`` is read at ``mask``'s positions
    against ``next_token`` (the clean next tokens) and, for ``logit_diff``, ``counterfactual`` (the dataset's
    wrong answers, as a claim reads them)."""
    n_seqs, seq = tokens.shape
    cfg = model.cfg
    layer_sites = [(layer, site) for layer in range(int(cfg.n_layers)) for site in sites(model, over, layer)]
    for _, site in layer_sites:
        check_hook_name(model, site.hook, ("over",))
    # Causal attention: a patch after the last scored position cannot reach a score, so its cell's run is the
    # corrupted run, exactly; it is not run.
    reach = int(mask.any(0).nonzero().max()) + 1 if mask.any() else 0
    masks = {f"sweep@{j}": position_mask(n_seqs, seq, j) for j in range(reach)}
    cells = [(layer, site.head, j) for layer, site in layer_sites for j in range(seq)]
    run = [i for i, (_, _, j) in enumerate(cells) if j < reach]
    variants = [Variant(input=CORRUPTED)] + [
        Variant(input=CORRUPTED, edits=(HookEdit(site, f"sweep@{j}", "clean"),))
        for _, site in layer_sites for j in range(reach)
    ]
    want = Want(metric, mask)
    wants: dict[Any, list[Want]] = {k: [want] for k in range(len(variants))}
    wants |= {input_target(CLEAN): [want], input_target(CORRUPTED): [want]}
    sink = Readouts(next_token, wants, [], window=min(n_seqs, max_rows), counterfactual=counterfactual)
    data = EngineInputs({CLEAN: tokens, CORRUPTED: corrupted}, masks)
    with torch.no_grad(), counting_passes(model, progress) as passes:
        passes.enter(f"clean run of {n_seqs} sequences")
        _, cache = clean_run(model, tokens, {site.hook for _, site in layer_sites}, max_rows,
                             sink.input_chunks(CLEAN))
        passes.enter(f"{len(cells)} cells, stacked")
        run_variants(model, variants, data, Replacements(cache, model, masks), max_rows, resume=resume, sink=sink)
    if sink.non_finite is not None:
        k, s, p = sink.non_finite
        raise CircuitcheckError(f"non-finite logits in sweep run {k} at sequence {s}, position {p}")

    def sums(k: Any) -> torch.Tensor:
        return per_sequence(sink.values[(k, *want.key)], mask)

    corrupted_sums = sums(0)
    patched = corrupted_sums[:, None].repeat(1, len(cells))
    for k, i in enumerate(run, start=1):
        patched[:, i] = sums(k)
    return SweepValues(mask.sum(1).double(), sums(input_target(CLEAN)), corrupted_sums, patched, cells, len(variants))


@dataclass(frozen=True)
class Effects:
    """Per cell: the fraction recovered, and its bootstrap interval (NaN where undefined)."""

    estimate: torch.Tensor
    lo: torch.Tensor
    hi: torch.Tensor


def effects(values: SweepValues, n_resamples: int, seed: int, confidence: float) -> Effects:
    stats = values.stats()
    estimate = stats.statistic(stats.totals())
    draws = stats.bootstrap(n_resamples, seed)
    bounds = [interval(draws[:, i], confidence) for i in range(draws.shape[1])]
    lo = torch.tensor([b[0] for b in bounds], dtype=torch.float64)
    hi = torch.tensor([b[1] for b in bounds], dtype=torch.float64)
    return Effects(estimate, lo, hi)
