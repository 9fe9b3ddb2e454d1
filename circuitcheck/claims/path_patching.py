"""Path patching: a sender head's effect on the metric through declared receivers only.

The sender's output is changed (zero / mean / resample of its ``z``) but the
change reaches only the receivers: a later head's query, key or value input
(``"1.0.q"``), a later MLP (``"mlp1"``), or the logits directly (``"logits"``).
Every other component reads the clean residual stream (:mod:`circuitcheck.run.paths`).
estimate = the metric's drop (absolute or relative, as in ablation claims) or,
with ``effect: fraction_of_total``, the drop through the paths over the drop
when the sender is ablated outright.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from circuitcheck.claims.ablation_common import AblationMethod, ablation_edits
from circuitcheck.claims.base import ClaimSpec, CompileContext, claim_kind, sequence_sums
from circuitcheck.errors import PlanError
from circuitcheck.plan.components import HookSite
from circuitcheck.plan.interventions import ClaimOutputs, ClaimPlan, HookEdit, Measurement, PathSpec, Variant, reads
from circuitcheck.plan.positions import ALL
from circuitcheck.spec.base import Seed
from circuitcheck.spec.components import HeadInput, HeadRef, Logits, Mlp, Receiver, ReceiverRef
from circuitcheck.spec.references import MetricName, Selection
from circuitcheck.stats import SequenceStats, Totals, safe_ratio

if TYPE_CHECKING:  # tensors appear in annotations only: `validate` loads this module without torch
    import torch


@claim_kind
class PathPatchingClaim(ClaimSpec):
    """A sender head's effect reaches ``metric`` through the declared receivers only: the drop along them."""

    # The kind's reference (`circuitcheck docs KIND`): exact estimate, interval, a worked example, traps.
    formula = """\
M_run = (sum of the metric over the scored positions of run) / (number of scored positions)
  s = +1 when the metric is higher-is-better, -1 when lower-is-better (loss, kl)
  full: the clean run
  path: the sender's output (its hook_z) changed by `method` at `sender_at`, and that change passed ONLY to
        `receivers` (a later head's q/k/v input, a later MLP, or the logits); every other component reads the
        clean residual stream (norms recomputed)
  total: the sender ablated outright (its change reaches everything)
drop = s * (M_full - M_path)
effect: absolute_drop       estimate = drop
effect: relative_drop       estimate = drop / |M_full|
effect: fraction_of_total   estimate = drop / (s * (M_full - M_total))   (the share of the sender's effect
                            that flows through the receivers)
"""
    example = """\
version: 1
name: path-patching-example
model: caesar-easy
dataset: {kind: caesar, n_seqs: 200, seed: 0}
positions:
  from_0C: {range: [2, 32]}
claims:
  - id: F1-path-0.0
    statement: Most of head 0.0's effect reaches the output through the value inputs of heads 1.0 and 1.1.
    kind: path_patching
    sender: "0.0"
    receivers: [1.0.v, 1.1.v]
    method: mean
    positions: from_0C
    metric: correct_prob
    effect: fraction_of_total
    threshold: {at_least: 0.5}
"""
    resamples = (
        "Sequences: a percentile bootstrap (statistics.bootstrap resamples, seeded) draws sequences with replacement "
        "and recomputes the estimate from the drawn sequences' totals, every numerator and denominator from the same "
        "draw."
    )
    traps = (
        "fraction_of_total is undefined (null, fails) when ablating the sender outright does not change the metric.",
        "Receivers must sit in later layers than the sender (an MLP in the sender's own layer reads it).",
        "Not clipped: paths can carry more than the total when other paths push the other way.",
    )

    kind: Literal["path_patching"] = "path_patching"
    sender: HeadRef = Field(description="'L.H': the head whose output is changed")
    receivers: list[ReceiverRef] = Field(min_length=1, description="'L.H.q' / 'L.H.k' / 'L.H.v', 'mlpL', or 'logits'")
    method: AblationMethod
    resample_seed: Seed | None = None
    sender_at: Selection = Field(default=ALL, description="Positions where the sender's output changes")
    positions: Selection = Field(description="Positions where the metric is measured")
    metric: MetricName
    effect: Literal["absolute_drop", "relative_drop", "fraction_of_total"]

    def _receiver(self, ctx: CompileContext, receiver: Receiver, i: int, sender_layer: int) -> tuple[HookSite, str]:
        """(the receiver's hook site, the residual-stream hook it reads)."""
        at = ("receivers", i)
        cfg = ctx.model.cfg
        if isinstance(receiver, Logits):
            last = cfg.n_layers - 1
            return HookSite(f"blocks.{last}.hook_resid_post"), f"blocks.{last}.hook_resid_post"
        if isinstance(receiver, HeadInput):
            layer, head = receiver.head.layer, receiver.head.head
            ctx.head(layer, head, at)
            if layer <= sender_layer:
                raise PlanError(
                    ctx.path + at,
                    f"head {layer}.{head} does not read layer {sender_layer}'s output",
                    "receivers must be in later layers than the sender",
                )
            return HookSite(f"blocks.{layer}.attn.hook_{receiver.input}", head), f"blocks.{layer}.hook_resid_pre"
        if isinstance(receiver, Mlp) and not cfg.attn_only:
            layer = receiver.layer
            if not sender_layer <= layer < cfg.n_layers:
                raise PlanError(
                    ctx.path + at,
                    f"mlp{layer} does not read layer {sender_layer}'s attention output",
                    f"use an MLP in layers {sender_layer}..{cfg.n_layers - 1}",
                )
            return HookSite(f"blocks.{layer}.hook_mlp_out"), f"blocks.{layer}.hook_resid_mid"
        raise PlanError(
            ctx.path + at,
            f"unknown receiver {str(receiver)!r}",
            "use 'L.H.q', 'L.H.k', 'L.H.v', 'logits'" + ("" if cfg.attn_only else " or 'mlpL'"),
        )

    def compile(self, ctx: CompileContext) -> ClaimPlan:
        metric = ctx.metric(self.metric)
        mask = ctx.scored(self.positions)
        at = ctx.selection(self.sender_at, "sender_at")
        layer, head = ctx.head_ref(self.sender, "sender")
        sender = HookSite(f"blocks.{layer}.attn.hook_z", head)
        direct = ablation_edits(ctx, [sender], self.method, at, self.resample_seed)[0]
        edits = []
        for i, receiver in enumerate(self.receivers):
            site, resid = self._receiver(ctx, receiver, i, layer)
            spec = PathSpec(sender, self.method, resid, at, direct.seed)
            edits.append(HookEdit(site, ALL, "path", path=spec))
        if len({e.site for e in edits}) < len(edits):
            raise PlanError(ctx.path + ("receivers",), "a receiver is listed twice", "list each receiver once")
        variants = {"path": Variant(edits=tuple(edits))}
        if self.effect == "fraction_of_total":
            variants["total"] = Variant(edits=(direct,))
        sign = 1.0 if metric.higher_is_better else -1.0

        def statistic(t: Totals) -> torch.Tensor:
            full = t["full"] / t["n"]
            drop = sign * (full - t["path"] / t["n"])
            if self.effect == "absolute_drop":
                return drop
            if self.effect == "relative_drop":
                return safe_ratio(drop, full.abs())
            return safe_ratio(drop, sign * (full - t["total"] / t["n"]))

        def score(out: ClaimOutputs) -> Measurement:
            per_seq = {"n": mask.sum(1).double(), "full": sequence_sums(out, None, metric, mask)}
            per_seq |= {role: sequence_sums(out, role, metric, mask) for role in variants}
            stats = SequenceStats(per_seq, statistic)
            t = {k: float(v) for k, v in stats.totals().items()}
            means = {f"metric_{k}": t[k] / t["n"] for k in per_seq if k != "n"}
            estimate = stats.estimate()
            found = (
                f"{self.method}-ablating head {self.sender}'s output only along the path(s) to "
                f"{', '.join(map(str, self.receivers))} "
                f"moved {self.metric} from {means['metric_full']:.4f} to {means['metric_path']:.4f}"
            )
            if "total" in variants:
                found += (
                    f" (ablating it outright: {means['metric_total']:.4f}); the paths carry {estimate:.3f} of its "
                    "effect"
                )
            n = int(t["n"])
            return Measurement(estimate, found, means | {"n_examples": n}, stats, n_examples=n)

        lines = tuple(f"{role}: {v.describe()}" for role, v in variants.items()) + (
            f"score {self.metric} at '{self.positions}' ({int(mask.sum())} positions); estimate = {self.effect}",
        )
        return ClaimPlan(
            claim_id=self.id, kind=self.kind, variants=variants, captures=frozenset(), describe=lines, score=score,
            reads=reads([None, *variants], [metric], mask),
        )
