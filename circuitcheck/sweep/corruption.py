"""``sweep --corruption``: which corrupted run the sweep patches into, and what it scores.

The option names a claim of the file by its id (its ``corruption:`` is used, and its ``positions`` and
``metric`` become the defaults), or holds a corruption written inline as YAML or JSON
(``'{scheme: resample_tokens, positions: X, seed: 5}'``). A value that is a claim id of the file is that
claim; any other value must parse as a mapping. The corruption is validated as the ``activation_patching``
claim kind validates its own, and compiled by that kind, so every scheme it accepts works here.

Errors: a claim of the file that cannot serve (no ``corruption:``) is pinned to its ``file:line:col``; a bad
option value is one line naming the option, then a ``fix:`` line.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import TypeAdapter, ValidationError

from circuitcheck.claims.activation_patching import ActivationPatchingClaim
from circuitcheck.errors import CircuitcheckError, PlanError, SpecError
from circuitcheck.plan.context import CompileContext
from circuitcheck.plan.positions import ALL

if TYPE_CHECKING:
    import torch

    from circuitcheck.plan.compile import FilePlan

INLINE_EXAMPLE = "--corruption '{scheme: resample_tokens, positions: SEL, seed: 5}'"

DEFAULT_METRIC = "logprob"
"""The metric when the corruption is written inline: the log-probability of the clean next token is defined
for any vocabulary size (``correct_prob`` of a large vocabulary is tiny, and its fraction recovered noisy)."""

_OPTION_OF_FIELD = {"corruption": "--corruption", "positions": "--positions", "metric": "--metric"}


class OptionError(CircuitcheckError):
    """A bad command-line value: one line naming the option, then a ``fix:`` line."""

    def __init__(self, option: str, message: str, fix: str) -> None:
        super().__init__(f"{option}: {message}\n  fix: {fix}")


@dataclass(frozen=True)
class Corrupted:
    """The sweep's corrupted tokens, where they came from, and what the sweep scores."""

    tokens: torch.Tensor
    corruption: dict[str, Any]
    """The corruption as written in a claim (JSON-ready): what the draft's claims repeat."""
    source: str
    """``claim <id>`` or ``inline``."""
    positions: str
    metric: str
    mask: torch.Tensor
    """``[n_seqs, seq]``: the scored positions (``positions`` restricted to those with a next token)."""


def _corruption_type() -> Any:
    return ActivationPatchingClaim.model_fields["corruption"].annotation


def _from_claim(plan: FilePlan, text: str) -> tuple[dict[str, Any], str | None, str | None] | None:
    """``(corruption, positions, metric)`` of the claim with id ``text``, or None when no claim has that id."""
    for i, claim in enumerate(plan.spec.claims):
        if claim.id != text:
            continue
        corruption = getattr(claim, "corruption", None)
        if corruption is None:
            with_one = [c.id for c in plan.spec.claims if getattr(c, "corruption", None) is not None]
            raise SpecError(
                plan.source_map.locate(("claims", i, "kind")), f"claims.{i}",
                f"claim {text!r} (kind {claim.kind}) has no corruption: a sweep patches clean activations into a "
                "corrupted run",
                f"name a claim that has one ({', '.join(with_one) or 'none in this file'}), or write one inline: "
                f"{INLINE_EXAMPLE}",
            )
        return corruption.model_dump(mode="json"), getattr(claim, "positions", None), getattr(claim, "metric", None)
    return None


def _inline(plan: FilePlan, text: str) -> dict[str, Any]:
    with_one = [c.id for c in plan.spec.claims if getattr(c, "corruption", None) is not None]
    names = f"a claim id with a corruption ({', '.join(with_one)})" if with_one else "no claim of this file has one"
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem", None) or "not valid YAML"
        raise OptionError("--corruption", f"{text!r} is no claim id of {plan.path} and not a YAML mapping ({mark})",
                          f"give {names}, or a mapping: {INLINE_EXAMPLE}") from None
    if not isinstance(data, dict):
        raise OptionError("--corruption", f"{text!r} is no claim id of {plan.path}, nor a corruption written inline",
                          f"give {names}, or a mapping: {INLINE_EXAMPLE}")
    try:
        parsed = TypeAdapter(_corruption_type()).validate_python(data)
    except ValidationError as err:
        first = err.errors()[0]
        # a union of schemes puts the scheme's class name in the location: the user wrote keys only
        where = ".".join(str(p) for p in first["loc"] if not str(p)[:1].isupper()) or "the mapping"
        raise OptionError("--corruption", f"{where}: {first['msg']} (in {text!r})",
                          f"write a corruption as claims do, e.g. {INLINE_EXAMPLE}") from None
    dumped: dict[str, Any] = parsed.model_dump(mode="json")
    return dumped


def resolve_corruption(plan: FilePlan, text: str, positions: str | None, metric: str | None) -> Corrupted:
    """The corrupted tokens of ``--corruption text`` on ``plan``'s dataset; ``positions`` and ``metric``
    override the claim's (defaults when inline: every position with a next token, :data:`DEFAULT_METRIC`)."""
    found = _from_claim(plan, text)
    if found is None:
        corruption, source, claim_positions, claim_metric = _inline(plan, text), "inline", None, None
    else:
        (corruption, claim_positions, claim_metric), source = found, f"claim {text}"
    positions = positions or claim_positions or ALL
    metric = metric or claim_metric or DEFAULT_METRIC
    # Compiling a one-off activation_patching claim draws the corrupted tokens exactly as the claim kind does,
    # and checks the corruption's selection, the scored positions and the metric against the file.
    probe = ActivationPatchingClaim.model_validate({
        "id": "sweep", "statement": "the sweep's corrupted run", "kind": "activation_patching",
        "corruption": corruption, "patch": ["embed"], "positions": positions, "metric": metric,
        "threshold": {"at_least": 0.0},
    })
    inputs = dict(plan.inputs)
    ctx = CompileContext(plan.loaded.model, plan.batch, plan.masks, inputs, ("sweep",), plan.loaded.card,
                         plan.base, plan.circuits)
    try:
        probe.compile(ctx)
        mask = ctx.scored(positions)
    except PlanError as err:
        field = next((str(p) for p in err.path[1:2]), "corruption")
        raise OptionError(_OPTION_OF_FIELD.get(field, "--corruption"), err.message,
                          err.fix or f"see `circuitcheck explain {plan.path}`") from None
    return Corrupted(inputs["sweep:corrupted"], corruption, source, positions, metric, mask)
