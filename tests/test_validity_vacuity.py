"""The vacuity lint (issue 15): claims that cannot fail are refused at validate and at compile, naming the rule
and the ``allow_vacuous`` escape; claims that can fail go through. The path analysis behind the compile-time
rules is checked against real forward passes with hooks."""

from __future__ import annotations

import pytest
import torch

from circuitcheck.cli import main
from circuitcheck.errors import SpecErrors
from circuitcheck.plan.compile import compile_file
from circuitcheck.plan.vacuity import reach
from circuitcheck.spec.hypothesis import load_hypothesis
from circuitcheck.spec.vacuity import ModelFacts, estimate_range
from circuitcheck.testing import tiny_model

HEAD = """
version: 1
model: {model}
dataset: {dataset}
positions:
  Y: {{role: Y}}
  X_pos: {{role: X}}
  first: {{indices: [0]}}
claims:
"""
TRIGRAM = "{kind: trigram, n_seqs: 60, seed: 1, density: 0.05}"


def trigram_file(claim: str, model: str = "trigram") -> str:
    return HEAD.format(model=model, dataset=TRIGRAM) + claim


SUFFICIENCY = """
  - id: S
    statement: the circuit is sufficient
    kind: ablation
    mode: sufficiency
    components: {components}
    method: {method}
    positions: Y
    metric: logprob
    threshold: {{at_least: 0.9}}
{extra}"""


def sufficiency(components: str, method: str = "mean", extra: str = "") -> str:
    return SUFFICIENCY.format(components=components, method=method, extra=extra)


def spec_errors(path) -> list:
    with pytest.raises(SpecErrors) as info:
        load_hypothesis(path)
    return info.value.errors


def compile_errors(path) -> list:
    with pytest.raises(SpecErrors) as info:
        compile_file(path)
    return info.value.errors


# --- validate: no model loaded ---------------------------------------------------------------------------------


def test_validate_rejects_a_sufficiency_claim_over_every_component(write_yaml, capsys):
    path = write_yaml(trigram_file(sufficiency('[embed, pos_embed, "0.0", mlp0]')))
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}:14:17: claims.0.components: vacuous claim (rule keeps-everything)" in err
    assert "every component of the model (embed, pos_embed, 0.0, mlp0)" in err
    assert "allow_vacuous: true" in err and "vacuous_reason" in err


def test_layers_named_whole_count_as_their_heads(write_yaml):
    (err,) = spec_errors(write_yaml(trigram_file(sufficiency("[embed, pos_embed, attn0, mlp0]"))))
    assert "rule keeps-everything" in err.message


def test_a_strict_subset_is_not_vacuous_at_validate(write_yaml):
    spec, _ = load_hypothesis(write_yaml(trigram_file(sufficiency('[embed, pos_embed, "0.0"]'))))
    assert spec.claims[0].components


def test_allow_vacuous_needs_a_reason_and_then_lets_the_claim_through(write_yaml, capsys):
    everything = '[embed, pos_embed, "0.0", mlp0]'
    reason = "    allow_vacuous: true\n    vacuous_reason: the full circuit is the model (a sanity check)\n"
    allowed = write_yaml(trigram_file(sufficiency(everything, extra=reason)))
    assert main(["validate", str(allowed)]) == 0
    assert compile_file(allowed).claims[0].claim_id == "S"
    (err,) = spec_errors(write_yaml(trigram_file(sufficiency(everything, extra="    allow_vacuous: true\n"))))
    assert "'allow_vacuous: true' needs a 'vacuous_reason'" in err.message
    (err,) = spec_errors(write_yaml(trigram_file(sufficiency('["0.0"]', extra="    vacuous_reason: why\n"))))
    assert "'vacuous_reason' applies only with 'allow_vacuous: true'" in err.message
    capsys.readouterr()


THRESHOLD = """
  - id: T
    statement: a fraction
    kind: qk_positional_order
    layer: 0
    head: 0
    direction: increasing
    threshold: {threshold}
"""


@pytest.mark.parametrize(
    ("threshold", "verdict"),
    [
        ("{at_least: 1.2}", "can never be met: the claim cannot pass"),
        ("{at_least: 0}", "holds for every estimate: the claim cannot fail"),
        ("{at_least: -0.5}", "holds for every estimate: the claim cannot fail"),
        ("{at_most: 1}", "holds for every estimate: the claim cannot fail"),
        ("{at_most: -0.1}", "can never be met: the claim cannot pass"),
        ("{within: 1}", "holds for every estimate: the claim cannot fail"),
        ("{between: [-1, 2]}", "holds for every estimate: the claim cannot fail"),
        ("{between: [1.5, 2]}", "can never be met: the claim cannot pass"),
    ],
)
def test_a_threshold_outside_the_estimates_range(write_yaml, threshold, verdict):
    (err,) = spec_errors(write_yaml(trigram_file(THRESHOLD.format(threshold=threshold))))
    assert err.message.startswith(
        "vacuous claim (rule threshold-out-of-range): the estimate of claim kind 'qk_positional_order'"
    )
    assert "lies in [0, 1]" in err.message and verdict in err.message
    assert err.path.startswith("claims.0.threshold")


@pytest.mark.parametrize(
    "threshold", ["{at_least: 1.0}", "{at_least: 0.01}", "{at_most: 0.99}", "{within: 0.5}", "{between: [0.4, 1]}"]
)
def test_a_threshold_inside_the_range_is_fine(write_yaml, threshold):
    load_hypothesis(write_yaml(trigram_file(THRESHOLD.format(threshold=threshold))))


def test_estimate_ranges_follow_the_claims_settings():
    from types import SimpleNamespace as Claim

    assert estimate_range(Claim(kind="composition", scale="raw")) == (0.0, 1.0)
    assert estimate_range(Claim(kind="composition", scale="z")) is None
    assert estimate_range(Claim(kind="attention_mass", more_than_roles=["A"])) == (-1.0, 1.0)
    assert estimate_range(Claim(kind="ablation", mode="necessity", metric="accuracy", effect="absolute_drop")) == (
        -1.0, 1.0)
    assert estimate_range(Claim(kind="ablation", mode="necessity", metric="loss", effect="relative_drop")) == (
        -1.0, float("inf"))
    assert estimate_range(Claim(kind="ablation", mode="sufficiency", metric="accuracy")) is None
    assert estimate_range(Claim(kind="independence", metric="logit_diff")) is None
    assert estimate_range(Claim(kind="a_plugin_kind", estimate_range=lambda: (0, 2))) == (0.0, 2.0)


CIRCUIT_FILE = """
version: 1
model: {model}
dataset: {dataset}
positions:
  Y: {{role: Y}}
circuits:
  c: {circuit}
claims:
  - id: P
    statement: the circuit preserves the model
    kind: {kind}
    circuit: c
    ablation: {ablation}
    positions: Y
    metric: correct_prob
    threshold: {threshold}
"""


def circuit_file(circuit: str, kind: str = "preservation", ablation: str = "zero") -> str:
    threshold = "{within: 0.02}" if kind == "preservation" else "{at_least: 0.9}"
    return CIRCUIT_FILE.format(model="trigram", dataset=TRIGRAM, circuit=circuit, kind=kind, ablation=ablation,
                               threshold=threshold)


@pytest.mark.parametrize("kind", ["preservation", "faithfulness"])
def test_a_circuit_claim_over_the_full_model_is_refused_at_validate(write_yaml, kind):
    (err,) = spec_errors(write_yaml(circuit_file("{edges: {all_except: []}}", kind)))
    assert err.path == "claims.0.circuit" and "rule keeps-everything" in err.message
    assert "'all_except: []' keeps every edge" in err.message
    (err,) = spec_errors(write_yaml(circuit_file('{nodes: [embed, pos_embed, "0.0", mlp0, logits]}', kind)))
    assert "its nodes are every node of the model" in err.message


# --- compile: on the model and its data ------------------------------------------------------------------------

EVERY_TRIGRAM_EDGE = (
    '{edges: ["embed -> 0.0.q", "embed -> 0.0.k", "embed -> 0.0.v", "pos_embed -> 0.0.q", "pos_embed -> 0.0.k", '
    '"pos_embed -> 0.0.v", "embed -> mlp0", "pos_embed -> mlp0", "0.0 -> mlp0", "embed -> logits", '
    '"pos_embed -> logits", "0.0 -> logits", "mlp0 -> logits"]}'
)


def test_a_circuit_listing_every_edge_is_refused_when_it_compiles(write_yaml):
    path = write_yaml(circuit_file(EVERY_TRIGRAM_EDGE))
    load_hypothesis(path)  # nothing to see without the model's edge list
    (err,) = compile_errors(path)
    assert err.path == "claims.0.circuit" and "removes no edge (13 of the model's 13 edges kept)" in err.message


def test_a_circuit_that_only_drops_positional_edges_changes_nothing_under_mean_ablation(write_yaml):
    kept = EVERY_TRIGRAM_EDGE.replace('"pos_embed -> logits", ', "")
    (err,) = compile_errors(write_yaml(circuit_file(kept, ablation="mean")))
    assert "removes only pos_embed edges, which mean ablation leaves as they are" in err.message
    compile_file(write_yaml(circuit_file(kept, ablation="zero"), "zero.yaml"))  # zero ablation removes them


def test_mean_ablating_the_positional_embedding_keeps_everything(write_yaml):
    (err,) = compile_errors(write_yaml(trigram_file(sufficiency('[embed, "0.0", mlp0]'))))
    assert err.path == "claims.0.components" and "rule keeps-everything" in err.message
    assert "ablated: hook_pos_embed" in err.message
    compile_file(write_yaml(trigram_file(sufficiency('[embed, "0.0", mlp0]', "zero")), "zero.yaml"))


NECESSITY = """
  - id: N
    statement: the component is necessary
    kind: ablation
    mode: necessity
    components: {components}
    method: {method}
    ablate_at: {at}
    positions: Y
    metric: accuracy
    effect: absolute_drop
    threshold: {{at_least: 0.1}}
"""


@pytest.mark.parametrize(
    ("components", "method", "at"),
    [("[pos_embed]", "mean", "all"), ('["0.0"]', "zero", "first"), ("[mlp0]", "zero", "first")],
)
def test_a_necessity_claim_that_ablates_nothing_the_metric_reads(write_yaml, components, method, at):
    (err,) = compile_errors(write_yaml(trigram_file(NECESSITY.format(components=components, method=method, at=at))))
    assert err.message.startswith("vacuous claim (rule ablates-nothing)") and "allow_vacuous" in err.fix


@pytest.mark.parametrize(
    ("components", "method", "at"),
    [("[pos_embed]", "mean", "X_pos"), ('["0.0"]', "mean", "X_pos")],
)
def test_on_one_layer_what_an_earlier_position_writes_reaches_no_later_logit(write_yaml, components, method, at):
    """A head's or the positional embedding's output at X stays at X on a one-layer model: only the token
    embedding at X is read from Y (by the head)."""
    (err,) = compile_errors(write_yaml(trigram_file(NECESSITY.format(components=components, method=method, at=at))))
    assert "rule ablates-nothing" in err.message


@pytest.mark.parametrize(
    ("components", "method", "at"),
    [("[pos_embed]", "zero", "all"), ("[embed]", "mean", "X_pos"), ('["0.0"]', "resample\n    resample_seed: 1", "Y")],
)
def test_a_necessity_claim_that_reaches_the_metric_compiles(write_yaml, components, method, at):
    compile_file(write_yaml(trigram_file(NECESSITY.format(components=components, method=method, at=at))))


PATCHING = """
  - id: P
    statement: patching restores it
    kind: activation_patching
    corruption: {{scheme: resample_tokens, positions: X_pos, seed: 5}}
    patch: {patch}
    patch_at: {at}
    positions: Y
    metric: correct_prob
    threshold: {{at_least: 0.8}}
"""


@pytest.mark.parametrize(("patch", "at"), [('["0.0"]', "Y"), ("[attn0]", "Y"), ("[embed]", "X_pos"),
                                           ("[blocks.0.hook_resid_post]", "Y")])
def test_patching_every_path_from_the_corruption_is_refused(write_yaml, patch, at):
    (err,) = compile_errors(write_yaml(trigram_file(PATCHING.format(patch=patch, at=at))))
    assert err.path == "claims.0.patch" and err.message.startswith("vacuous claim (rule patches-every-path)")


@pytest.mark.parametrize(("patch", "at"), [("[blocks.0.attn.hook_v]", "X_pos"), ("[blocks.0.attn.hook_k]", "X_pos"),
                                           ('["0.0"]', "X_pos"), ("[mlp0]", "Y")])
def test_patching_part_of_the_path_compiles(write_yaml, patch, at):
    compile_file(write_yaml(trigram_file(PATCHING.format(patch=patch, at=at))))


def test_a_sufficiency_claim_that_keeps_everything_on_another_variant_is_not_applicable_there(write_yaml):
    plan = compile_file(write_yaml(trigram_file(sufficiency('[embed, pos_embed, "0.0"]'))), "trigram-attn-only",
                        skip_inapplicable=True)
    assert "rule keeps-everything" in plan.not_applicable["S"]


def test_the_suite_passes_the_lint():
    from tests.conftest import HYPOTHESES

    for path in sorted(HYPOTHESES.glob("*.yaml")):
        load_hypothesis(path)  # the compile-time rules run with the suite


def test_model_facts_read_the_card():
    facts = ModelFacts.from_config({"n_layers": 2, "n_heads": 3, "attn_only": True})
    assert facts is not None and [str(c) for c in facts.components()] == [
        "embed", "pos_embed", "0.0", "0.1", "0.2", "1.0", "1.1", "1.2"]
    assert ModelFacts.from_config({"n_layers": "x"}) is None


# --- the path analysis against the model itself -----------------------------------------------------------------

def _edit(name: str, where: torch.Tensor, head: int | None, values: torch.Tensor | None):
    """A hook writing zeros (or ``values``) at ``where``'s positions (and only ``head`` of ``hook_z``)."""

    def hook(act, hook):
        new = torch.zeros_like(act) if values is None else values.to(act.dtype)
        keep = where.reshape(where.shape + (1,) * (act.dim() - 2))
        if head is not None:  # hook_z is [batch, position, head, d_head]
            one = torch.zeros(act.shape[2], 1, dtype=torch.bool)
            one[head] = True
            keep = keep & one
        return torch.where(keep, new, act)

    return (name, hook)


@pytest.mark.parametrize("trial", range(6))
def test_reach_is_exactly_where_a_zero_ablation_changes_the_logits(trial):
    model = tiny_model()
    gen = torch.Generator().manual_seed(trial)
    tokens = torch.randint(0, 11, (5, 12), generator=gen)
    where = torch.rand(5, 12, generator=gen) < 0.15
    layer, head = trial % 2, trial % 3
    node, name, h = [
        (("head", layer, head), f"blocks.{layer}.attn.hook_z", head),
        (("mlp", layer), f"blocks.{layer}.hook_mlp_out", None),
        (("embed",), "hook_embed", None),
    ][trial % 3]
    with torch.no_grad():
        clean = model(tokens)
        ablated = model.run_with_hooks(tokens, fwd_hooks=[_edit(name, where, h, None)])
    changed = (ablated - clean).abs().amax(-1) > 1e-6
    predicted = reach(model, (5, 12), {node: where}, {})
    assert torch.equal(changed, predicted), (node, where.nonzero().tolist())


@pytest.mark.parametrize("trial", range(4))
def test_reach_is_exactly_where_patching_leaves_a_corruption_visible(trial):
    model = tiny_model()
    gen = torch.Generator().manual_seed(100 + trial)
    tokens = torch.randint(0, 11, (5, 12), generator=gen)
    corrupt = torch.zeros(5, 12, dtype=torch.bool)
    corrupt[:, 2 + trial] = True
    corrupted = torch.where(corrupt, (tokens + 1) % 11, tokens)
    at = torch.zeros(5, 12, dtype=torch.bool)
    at[:, 6:] = True
    name = "blocks.0.hook_resid_post" if trial % 2 else "blocks.1.attn.hook_z"
    with torch.no_grad():
        clean, cache = model.run_with_cache(tokens)
        patched = model.run_with_hooks(corrupted, fwd_hooks=[_edit(name, at, None, cache[name])])
    visible = (patched - clean).abs().amax(-1) > 1e-6
    cut = {("resid_post", 0): at} if trial % 2 else {("head", 1, h): at for h in range(3)}
    assert torch.equal(visible, reach(model, (5, 12), {("embed",): corrupt}, cut))
