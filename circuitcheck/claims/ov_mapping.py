"""A head's OV circuit maps declared source tokens to declared output tokens (CLAIMS.md X2).

"Head 0 writes T for C and F for D": the row of the full OV circuit
``ln1(W_E) W_V W_O W_U`` for each source token should have its largest logit on the
declared output. ``silent`` tokens should write nothing: their row's largest
absolute logit stays below ``silent_below`` times the largest one in the table.
estimate = the fraction of declared mappings (and silences) that hold.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from circuitcheck.claims.base import ClaimSpec, CompileContext, claim_kind
from circuitcheck.claims.weight_common import ov_matrix, token_inputs, weight_plan
from circuitcheck.errors import PlanError
from circuitcheck.plan.interventions import ClaimPlan, Measurement
from circuitcheck.spec.components import HeadRef

if TYPE_CHECKING:  # torch is imported where a model is needed: `validate` loads this module without it
    import torch


@claim_kind
class OVMappingClaim(ClaimSpec):
    """A head's full OV circuit maps source tokens to declared outputs: the fraction that hold, from the weights."""

    # The kind's reference (`circuitcheck docs KIND`): exact estimate, interval, a worked example, traps.
    formula = """\
T = ln1(W_E + mean over positions of W_pos) W_V W_O W_U   (one row per source token)
a mapping src -> dst holds when argmax T[src] = dst
a silent token s holds when max |T[s]| < silent_below * max |T|
estimate = (mappings and silences that hold) / (number of mappings + number of silent tokens)
"""
    example = """\
version: 1
name: ov-mapping-example
model: xor
dataset: {kind: strings, n_seqs: 400, seed: 3}
claims:
  - id: X2-head0-writes
    statement: Head 0's OV circuit writes T for C and F for D, and nothing for A, B or Q.
    kind: ov_mapping
    head: "0.0"
    maps: {C: T, D: F}
    silent: [A, B, Q]
    threshold: {at_least: 1.0}
"""
    resamples = (
        "Nothing: it is read from the weights, so the interval is the estimate itself."
    )
    traps = (
        "Tokens are names from the dataset's vocabulary or ids; they are resolved when the file compiles.",
        "'Silent' is relative to the table's largest entry, not an absolute logit.",
        "The source row uses the token at an average position, after the layer's ln1.",
    )

    kind: Literal["ov_mapping"] = "ov_mapping"
    head: HeadRef = Field(description="'L.H'")
    maps: dict[str, str] = Field(min_length=1, description="source token -> the output token its row should favour")
    silent: list[str] = Field(default_factory=list, description="Source tokens whose row should be near zero")
    silent_below: float = Field(default=0.05, gt=0.0, lt=1.0)

    def _id(self, ctx: CompileContext, token: str, field: str) -> int:
        try:
            return ctx.batch.token_id(int(token) if token.isdigit() else token)
        except KeyError as err:
            raise PlanError(
                ctx.path + (field, token), str(err.args[0]), "name a token of the dataset's vocabulary, or give its id"
            ) from None

    def compile(self, ctx: CompileContext) -> ClaimPlan:
        layer, head = ctx.head_ref(self.head, "head")
        maps = [(f"{s}->{o}", self._id(ctx, s, "maps"), self._id(ctx, o, "maps")) for s, o in self.maps.items()]
        silent = [self._id(ctx, s, "silent") for s in self.silent]
        model = ctx.model

        def measure() -> Measurement:
            table = token_inputs(model, layer) @ ov_matrix(model, layer, head) @ model.W_U
            top = table.argmax(-1)
            held = {name: bool(top[src] == dst) for name, src, dst in maps}
            scale = float(table.abs().max())
            quiet = {
                f"{s} silent": bool(table[i].abs().max() < self.silent_below * scale)
                for s, i in zip(self.silent, silent, strict=True)
            }
            checks = held | quiet
            estimate = sum(checks.values()) / len(checks)
            failed = [k for k, ok in checks.items() if not ok]
            found = f"{sum(checks.values())} of {len(checks)} OV behaviours of head {self.head} hold" + (
                f"; not: {', '.join(failed)}" if failed else ""
            )
            margins = {f"margin_{name}": _margin(table[src], dst) for name, src, dst in maps}
            return Measurement(estimate, found, {"checks": checks, "largest_abs_logit": scale} | margins, exact=True)

        lines = (f"full OV circuit of head {self.head}: {len(maps)} mappings, {len(silent)} silent tokens",)
        return weight_plan(self.id, self.kind, lines, measure)


def _margin(row: torch.Tensor, target: int) -> float:
    """How far ``target``'s logit leads the best other one (negative when it does not lead)."""
    import torch

    others = row.clone()
    others[target] = -torch.inf
    return float(row[target] - others.max())
