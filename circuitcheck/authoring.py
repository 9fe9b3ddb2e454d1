"""Authoring help: the JSON Schema of the hypothesis format, and a commented scaffold for a model.

The schema is pydantic's, of the file model built from every registered claim and dataset
kind, so new kinds appear in it without an edit here. The scaffold lists the model's
components and hook names and holds two claims that compile on it; `circuitcheck validate`
accepts it as written.
"""

from __future__ import annotations

import json
import typing
from typing import TYPE_CHECKING, Any, cast

from circuitcheck.data.registry import DataContext, DatasetSpec, build_dataset
from circuitcheck.errors import CircuitcheckError
from circuitcheck.metrics import metrics
from circuitcheck.plan.components import available_hooks, model_components
from circuitcheck.plugins import load_extensions
from circuitcheck.spec.components import Head
from circuitcheck.spec.hypothesis import hypothesis_model, safe_report_name
from circuitcheck.spec.kinds import claim_kinds, dataset_kinds

if TYPE_CHECKING:  # `circuitcheck schema` needs no model, so no torch
    from circuitcheck.zoo.load import LoadedModel

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
FILLERS: dict[str, Any] = {"n_seqs": 200, "seed": 0, "density": 0.05}
"""Values the scaffold tries for a dataset kind's required fields (Literal fields take their first option)."""


def hypothesis_schema() -> dict[str, Any]:
    schema = {"$schema": SCHEMA_DIALECT, **hypothesis_model().model_json_schema()}
    schema["description"] = f"circuitcheck hypothesis file (claim kinds: {', '.join(claim_kinds.names())})"
    return schema


def _candidate(kind: str) -> dict[str, Any]:
    stanza: dict[str, Any] = {"kind": kind}
    for name, info in dataset_kinds.get(kind).model_fields.items():
        if name == "kind" or not info.is_required():
            continue
        options = typing.get_args(info.annotation) if typing.get_origin(info.annotation) is typing.Literal else ()
        if options:
            stanza[name] = options[0]
        elif name in FILLERS:
            stanza[name] = FILLERS[name]
    return stanza


def dataset_stanza(loaded: LoadedModel) -> tuple[dict[str, Any], Any]:
    """The first registered dataset kind that builds for this model (the card's task kind first)."""
    load_extensions()
    cfg = loaded.model.cfg
    ctx = DataContext(loaded.card, loaded.checkpoint.parent, int(cfg.d_vocab), int(cfg.n_ctx))
    task_kind = str((loaded.card.get("task") or {}).get("kind", ""))
    kinds = sorted(dataset_kinds.names(), key=lambda k: (k != task_kind, k != "trigram", k))
    for kind in kinds:
        stanza = _candidate(kind)
        try:
            spec = cast(DatasetSpec, dataset_kinds.get(kind).model_validate(stanza))  # registered by @dataset_kind
            return stanza, build_dataset(spec, ctx)
        except (CircuitcheckError, ValueError, TypeError, KeyError, OSError):
            continue
    raise CircuitcheckError(
        f"model {loaded.name!r}: no registered dataset kind builds data for it; write the dataset stanza by hand"
    )


def _flow(value: Any) -> str:
    """A YAML flow value (JSON is valid YAML)."""
    return json.dumps(value)


def scaffold(loaded: LoadedModel, model_ref: str) -> str:
    cfg = loaded.model.cfg
    components = model_components(loaded.model)
    comps = [str(c) for c in components]
    stanza, batch = dataset_stanza(loaded)
    heads = [str(c) for c in components if isinstance(c, Head)]
    roles = [r for r in batch.role_names[1:] if bool(batch.role_mask(r).any())]
    lines = [
        f"# Hypothesis file for model {model_ref!r}: a scaffold from `circuitcheck init --model {model_ref}`.",
        "# Editor support: `circuitcheck schema -o hypothesis.schema.json`, then keep the next line.",
        "# yaml-language-server: $schema=hypothesis.schema.json",
        "#",
        f"# Model: {cfg.n_layers} layer(s), {cfg.n_heads} head(s) per layer, "
        f"d_model {cfg.d_model}, d_vocab {cfg.d_vocab}, "
        f"n_ctx {cfg.n_ctx}, {'attention-only' if cfg.attn_only else 'with MLPs'}.",
        "# Components (for components / patch / replace):",
        f"#   {', '.join(comps)}",
        *(f"#   attn{layer}: every head of layer {layer}" for layer in range(cfg.n_layers)),
        "# Hook names, in forward order (also usable as components):",
        *(f"#   {hook}" for hook in available_hooks(loaded.model)),
        f"# Metrics: {', '.join(metrics.names())}",
        f"# Dataset roles: {', '.join(roles) or 'none'}",
        "version: 1",
        f"name: {_flow(safe_report_name(loaded.name + '-hypotheses'))}",
        f"model: {_flow(model_ref)}",
        "dataset:",
        *(f"  {k}: {_flow(v)}" for k, v in stanza.items()),
        "positions:",
        f"  scored: {{range: [1, {batch.seq_len - 1}]}}   # half-open [start, stop)",
        *(f"  {_flow(role)}: {{role: {_flow(role)}}}" for role in roles),
        "claims:",
        "  - id: head-necessary",
        f"    statement: Mean-ablating head {heads[0]} lowers next-token accuracy by at least a tenth.",
        "    kind: ablation",
        "    mode: necessity",
        f"    components: [{_flow(heads[0])}]",
        "    method: mean            # zero | mean | resample (resample needs resample_seed)",
        "    positions: scored",
        "    metric: accuracy",
        "    effect: relative_drop   # or absolute_drop",
        "    threshold: {at_least: 0.1}",
        "",
        "  - id: whole-model",
        "    statement: Keeping every component keeps the model's log-probabilities (a sanity check).",
        "    kind: ablation",
        "    mode: sufficiency",
        f"    components: {_flow(comps)}",
        "    method: mean",
        "    positions: scored",
        "    metric: logprob",
        "    threshold: {at_least: 0.99}",
        "    allow_vacuous: true     # every component is the model itself: the vacuity lint refuses it otherwise",
        "    vacuous_reason: a sanity check of the ablation engine, not a finding; name a smaller circuit instead",
    ]
    return "\n".join(lines) + "\n"
