"""A whole hook and one head's slice of the same hook, edited by two claims of one file: the identity
self-check orders the edit sites (a ``TypeError`` comparing ``None`` with a head index before the fix)."""

from __future__ import annotations

from circuitcheck import check

SPEC = {
    "version": 1,
    "model": "induction",
    "dataset": {"kind": "repeated", "n_seqs": 20, "seed": 1},
    "positions": {"second": {"role": "second"}},
    "claims": [
        {
            "id": "head", "statement": "Mean-ablating head 1.0 drops the prediction.", "kind": "ablation",
            "mode": "necessity", "components": ["1.0"], "method": "mean", "positions": "second",
            "metric": "correct_prob", "effect": "relative_drop", "threshold": {"at_least": 0.5},
        },
        {
            "id": "whole-hook", "statement": "Patching all of layer 1's z restores the prediction.",
            "kind": "activation_patching",
            "corruption": {"scheme": "resample_tokens", "positions": "second", "seed": 5},
            "patch": ["blocks.1.attn.hook_z"], "patch_at": "second", "positions": "second",
            "metric": "correct_prob", "threshold": {"at_least": 0.5},
        },
    ],
}


def test_a_whole_hook_and_a_head_of_it_run_in_one_file():
    report = check(SPEC)
    assert report.claims["head"].verdict == "pass"
    assert report.claims["whole-hook"].verdict == "pass"
