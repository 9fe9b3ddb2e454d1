"""Test helpers for claim kinds: the built-in tests use them, and so can a plug-in's.

    from circuitcheck.testing import check_claim_kind, tiny_model

    def test_my_kind_matches_a_hand_computation():
        def by_hand(plan):                 # an independent reference: plain torch, no circuitcheck code
            ...
            return value

        check_claim_kind(MyClaim, "positions: Y\\nmetric: accuracy", tiny_model(), by_hand)

:func:`check_claim_kind` runs a kind the way a hypothesis file would, on a tiny model and a
small random dataset, and compares its estimate with a reference function (as torchmetrics'
``MetricTester`` checks each metric against a reference implementation). :func:`make_plan` is the
setup underneath, for tests that need the plan itself: it compiles claims against that dataset,
whose selections are ``all``, ``Y`` (position 5, annotated with the role ``Y``) and ``late``
(positions 8 onwards).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
import yaml

from circuitcheck.claims.base import ClaimSpec, claim_kind, claim_kinds, contract_problems
from circuitcheck.data.batch import TokenBatch, next_tokens_of
from circuitcheck.metrics import metrics
from circuitcheck.plan.circuits import ModelShape, compile_circuit
from circuitcheck.plan.compile import FilePlan
from circuitcheck.plan.context import CompileContext
from circuitcheck.plan.interventions import CLEAN, Measurement
from circuitcheck.run.execute import run_file
from circuitcheck.spec.circuits import CircuitSpec
from circuitcheck.spec.references import METRIC, SELECTION, references
from circuitcheck.spec.warnings import ClaimWarning
from circuitcheck.spec.yaml_source import SourceMap
from circuitcheck.zoo.build import build_bridge
from circuitcheck.zoo.load import LoadedModel

__all__ = ["N_SEQS", "SELECTIONS", "TINY_CONFIG", "check_claim_kind", "make_plan", "tiny_model"]

TINY_CONFIG: dict[str, Any] = {
    "n_layers": 2,
    "d_model": 16,
    "d_head": 4,
    "n_heads": 3,
    "d_mlp": 24,
    "d_vocab": 11,
    "n_ctx": 12,
    "act_fn": "relu",
    "normalization_type": "LN",
    "seed": 3,
}
"""A 2-layer model small enough to build in a test: 3 heads a layer, an MLP, LayerNorm, 11 tokens, 12 positions."""
N_SEQS = 12
"""Sequences in :func:`make_plan`'s default dataset."""
Y_POSITION = 5
LATE_FROM = 8
SELECTIONS = ("all", "Y", "late")
"""The selections :func:`make_plan` defines."""
COMMON_KEYS: dict[str, Any] = {
    "id": "c",
    "statement": "checked by circuitcheck.testing",
    "threshold": {"at_least": 0.0},
}
"""What :func:`check_claim_kind` fills in when the claim stanza leaves it out."""


def tiny_model(config: Mapping[str, Any] = TINY_CONFIG) -> Any:
    """A seeded random model built from ``config`` (TransformerLens bridge), in inference mode."""
    model = build_bridge(dict(config))
    model.train(False)  # inference mode, spelled so that a grep for Python's built-in eval finds nothing here
    return model


def make_plan(
    model: Any,
    claims: Sequence[ClaimSpec],
    tokens: torch.Tensor | None = None,
    tables: dict[str, torch.Tensor] | None = None,
    circuits: Mapping[str, Any] | None = None,
) -> FilePlan:
    """Compile ``claims`` against ``model`` on ``tokens`` (default: seeded random ``[12, n_ctx]``).

    The selections are ``all``, ``Y`` (position 5, whose role is ``Y``) and ``late`` (positions 8
    on); ``tables`` are the dataset's exact tables (for ``reference_table``); ``circuits`` are the
    file's ``circuits:`` block (name -> a circuit stanza, e.g. ``{"edges": ["0.0 -> logits"]}``). Run it with
    :func:`circuitcheck.run.execute.run_file`.
    """
    cfg = model.cfg
    if tokens is None:
        shape = (N_SEQS, int(cfg.n_ctx))
        tokens = torch.randint(0, int(cfg.d_vocab), shape, generator=torch.Generator().manual_seed(1))
    roles = torch.zeros_like(tokens)
    roles[:, Y_POSITION] = 2  # role code 2 is "Y" (0 is "none")
    batch = TokenBatch(tokens, next_tokens_of(tokens), roles, {"seed": 1}, tables=tables or {})
    late = torch.zeros_like(tokens, dtype=torch.bool)
    late[:, LATE_FROM:] = True
    masks = {"all": torch.ones_like(tokens, dtype=torch.bool), "Y": roles == 2, "late": late}
    inputs = {CLEAN: tokens}
    model_shape = ModelShape.of(model)
    compiled = {
        name: compile_circuit(name, c if isinstance(c, CircuitSpec) else CircuitSpec.model_validate(c), model_shape)
        for name, c in (circuits or {}).items()
    }
    warnings: list[ClaimWarning] = []
    plans = tuple(
        claim.compile(CompileContext(model, batch, masks, inputs, ("claims", i), circuits=compiled, warnings=warnings))
        for i, claim in enumerate(claims)
    )
    spec = SimpleNamespace(name="t", claims=list(claims))
    loaded = LoadedModel(model, "tiny", {}, Path("x"), "0" * 64)
    return FilePlan(
        Path("t.yaml"), spec, SourceMap("t.yaml", {}, {}), loaded, batch, masks, inputs, plans, circuits=compiled,
        warnings=tuple(warnings),
    )


def check_claim_kind(
    cls: type[ClaimSpec],
    claim: str | Mapping[str, Any],
    model: Any,
    reference: Callable[[FilePlan], float],
    *,
    tokens: torch.Tensor | None = None,
    tables: dict[str, torch.Tensor] | None = None,
    circuits: Mapping[str, Any] | None = None,
    atol: float = 1e-5,
    rtol: float = 1e-5,
) -> Measurement:
    """Check a claim kind end to end, and its estimate against ``reference``; return its measurement.

    ``claim`` is the claim's stanza (YAML text or a mapping); ``id``, ``statement``, ``threshold``
    and ``kind`` are filled in when left out. In order, it checks that ``cls`` keeps the claim
    contract (and registers it if its kind is not registered yet), that the stanza validates and
    dumps back to an equal spec, that every selection and metric it names resolves, and then
    compiles and runs it on :func:`make_plan`'s dataset and compares the estimate with
    ``reference(plan)``, computed independently from ``plan.batch``, ``plan.masks`` and ``model``
    (NaN matches NaN). Each failure is an ``AssertionError`` that says which check failed.
    """
    problems = contract_problems(cls)
    assert not problems, f"{cls.__qualname__} breaks the claim contract: " + "; ".join(rule for rule, _ in problems)
    kind = cls.model_fields["kind"].default
    if kind not in claim_kinds:
        claim_kind(cls)
    assert claim_kinds.get(kind) is cls, f"kind {kind!r} is registered by {claim_kinds.get(kind)!r}, not {cls!r}"
    data = yaml.safe_load(claim) if isinstance(claim, str) else dict(claim)
    assert isinstance(data, dict), f"the claim stanza must be a mapping, got {data!r}"
    spec = cls.model_validate(COMMON_KEYS | {"kind": kind} | data)
    dumped = spec.model_dump(mode="json", by_alias=True, exclude_unset=True)
    assert cls.model_validate(dumped) == spec, f"{cls.__qualname__} does not survive a dump and reload: {dumped!r}"
    for path, ref, name in references(spec):
        where = ".".join(map(str, path))
        assert ref != SELECTION or name in SELECTIONS, f"{where}: unknown selection {name!r}; use one of {SELECTIONS}"
        assert ref != METRIC or name in metrics, f"{where}: unknown metric {name!r}; use one of {metrics.names()}"
    plan = make_plan(model, [spec], tokens, tables, circuits)
    measurement = run_file(plan).claims[0].measurement
    want = float(reference(plan))
    got = measurement.estimate
    same = (math.isnan(got) and math.isnan(want)) or math.isclose(got, want, rel_tol=rtol, abs_tol=atol)
    assert same, f"{cls.__qualname__}'s estimate {got!r} differs from the reference {want!r} (atol {atol}, rtol {rtol})"
    return measurement
