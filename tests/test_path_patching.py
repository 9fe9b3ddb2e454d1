"""Path patching against a hand computation with ordinary hooks (issue 3, section 8)."""

from __future__ import annotations

import pytest
import torch

from circuitcheck.claims.path_patching import PathPatchingClaim
from circuitcheck.errors import PlanError
from circuitcheck.plan.interventions import CLEAN
from circuitcheck.run.engine import EngineInputs, Replacements, clean_run, run_naive, run_variants
from circuitcheck.testing import make_plan


def claim(**kw) -> PathPatchingClaim:
    base = dict(id="p", statement="s", kind="path_patching", sender="0.1", method="mean", positions="all",
                metric="logprob", effect="absolute_drop", threshold={"at_least": 0.0})
    return PathPatchingClaim.model_validate(base | kw)


def engine_logits(model, spec) -> tuple[torch.Tensor, torch.Tensor]:
    """(clean tokens, the engine's logits for the claim's 'path' variant)."""
    plan = make_plan(model, [spec])
    variant = plan.claims[0].variants["path"]
    capture = {e.site.hook for e in variant.edits} | {
        h for e in variant.edits for h in (e.path.resid, e.path.sender.hook)
    }
    _, cache = clean_run(model, plan.batch.tokens, capture, 4096)
    repl = Replacements(cache, model, plan.masks)
    data = EngineInputs(plan.inputs, plan.masks)
    stacked = run_variants(model, [variant], data, repl, max_rows=64)[0]
    naive = run_naive(model, variant, data, repl)
    torch.testing.assert_close(stacked, naive, atol=1e-5, rtol=0)
    return plan.inputs[CLEAN], stacked


def hand_path_patch(model, tokens, receiver_hook: str, receiver_head: int | None) -> torch.Tensor:
    """The textbook two-step recipe: (1) mean-ablate head 0.1 with every other component
    frozen at its clean value and record the receiver; (2) patch that into a clean run."""
    _, cache = model.run_with_cache(tokens)
    z_mean = cache["blocks.0.attn.hook_z"].mean(0, keepdim=True)
    frozen = [h for h in cache if h.endswith(("hook_z", "hook_mlp_out")) and h != "blocks.0.attn.hook_z"]

    def sender(act, hook):
        act = act.clone()
        act[:, :, 1] = z_mean[:, :, 1].expand_as(act[:, :, 1])
        return act

    def freeze(act, hook):
        return cache[hook.name]

    recorded = {}

    def record(act, hook):
        recorded["value"] = act.detach().clone()

    hooks = (
        [("blocks.0.attn.hook_z", sender)]
        + [(h, freeze) for h in frozen if h != receiver_hook]
        + [(receiver_hook, record)]
    )
    with torch.no_grad():
        model.run_with_hooks(tokens, fwd_hooks=hooks)

    def patch(act, hook):
        if receiver_head is None:
            return recorded["value"]
        act = act.clone()
        act[:, :, receiver_head] = recorded["value"][:, :, receiver_head]
        return act

    with torch.no_grad():
        return model.run_with_hooks(tokens, fwd_hooks=[(receiver_hook, patch)])


@pytest.mark.parametrize(
    ("receiver", "hook", "head"),
    [
        ("1.0.q", "blocks.1.attn.hook_q", 0),
        ("1.2.k", "blocks.1.attn.hook_k", 2),
        ("1.1.v", "blocks.1.attn.hook_v", 1),
        ("mlp0", "blocks.0.hook_mlp_out", None),
        ("mlp1", "blocks.1.hook_mlp_out", None),
        ("logits", "blocks.1.hook_resid_post", None),
    ],
)
def test_path_patching_matches_the_two_step_recipe(tiny_model, receiver, hook, head) -> None:
    tokens, got = engine_logits(tiny_model, claim(receivers=[receiver]))
    want = hand_path_patch(tiny_model, tokens, hook, head)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    assert (got - tiny_model(tokens)).abs().max() > 1e-4, "the patch must change something, or the test proves nothing"


def test_fraction_of_total_is_path_drop_over_total_drop(tiny_model) -> None:
    from circuitcheck.run.execute import run_file

    spec = claim(receivers=["logits"], effect="fraction_of_total")
    result = run_file(make_plan(tiny_model, [spec]))
    d = result.claims[0].measurement.details
    want = (d["metric_full"] - d["metric_path"]) / (d["metric_full"] - d["metric_total"])
    assert result.claims[0].measurement.estimate == pytest.approx(want, rel=1e-9)


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"receivers": ["0.0.q"]}, "does not read layer 0"),
        ({"receivers": ["1.5.q"]}, "head 5 is out of range"),
        ({"receivers": ["attn1"]}, "unknown receiver"),
        ({"receivers": ["logits", "logits"]}, "listed twice"),
        ({"sender": "2.0", "receivers": ["logits"]}, "layer 2 is out of range"),
    ],
)
def test_bad_receivers_are_refused_before_running(tiny_model, kw, message) -> None:
    with pytest.raises(PlanError, match=message):
        make_plan(tiny_model, [claim(**kw)])
