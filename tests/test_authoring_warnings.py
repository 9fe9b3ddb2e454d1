"""Warnings where a number cannot mean anything (issue 17, part 5): a random baseline whose pool cannot reach the
claim's alpha, a share that is zero by construction, a threshold on an uncalibrated scale. Each is shown by
`validate` (where the model is not needed), on the terminal, in the reports, with file:line:col and a fix."""

from __future__ import annotations

import json
import math

import pytest
import torch

from circuitcheck import check
from circuitcheck.cli import main
from circuitcheck.spec.hypothesis import load_hypothesis
from circuitcheck.spec.warnings import draws_needed, random_pool_warning, smallest_p_value, spec_warnings

SINGLE_HEAD = """
version: 1
model: induction
dataset: {kind: repeated, n_seqs: 60, seed: 3}
positions:
  second: {role: second}
claims:
  - id: single-head
    statement: Head 1.0 is necessary, and more than a random head is.
    kind: ablation
    mode: necessity
    components: ["1.0"]
    method: zero
    positions: second
    metric: accuracy
    effect: relative_drop
    threshold: {at_least: 0.5}
    random_baseline: {n: 50, seed: 1, alpha: 0.05}
"""
POOL = "a pool of 6 components (embed, pos_embed, 0.0, 0.1, 1.0, 1.1)"


def test_validate_warns_that_a_single_head_baseline_on_a_2x2_model_cannot_reach_alpha(write_yaml, capsys):
    path = write_yaml(SINGLE_HEAD)
    assert main(["validate", str(path)]) == 0  # a warning, not an error
    out, err = capsys.readouterr()
    assert "1 warning(s)" in out
    first, fix = err.strip().splitlines()
    assert first.startswith(f"{path}:17:46: warning: claims.0.random_baseline.alpha: alpha 0.05 cannot be reached")
    assert POOL in first and "only 6 distinct ones" in first
    assert "about 8.33 of the 50 draws are expected to be the claimed circuit" in first
    assert f"= {smallest_p_value(50, 50 / 6):.3g} >= 0.05" in first and "(rule random-pool)" in first
    assert fix.startswith("  fix: no number of draws can: 6 distinct circuits allow p >= 1/6; drop 'alpha'")


def _draws_equal_to(sites: set[int], n: int, seed: int, pool: int) -> int:
    """The seeded draws of ``AblationClaim._random_variants``, recounted."""
    gen = torch.Generator().manual_seed(seed)
    return sum(set(torch.randperm(pool, generator=gen)[: len(sites)].tolist()) == sites for _ in range(n))


def test_the_run_shows_the_warning_with_the_draws_counted_on_the_terminal_and_in_every_report(write_yaml, tmp_path,
                                                                                            capsys):
    path = write_yaml(SINGLE_HEAD)
    reports = tmp_path / "reports"
    main(["run", str(path), "--report-dir", str(reports)])
    out = capsys.readouterr().out
    own = _draws_equal_to({4}, 50, 1, 6)  # 1.0 is the 5th of embed, pos_embed, 0.0, 0.1, 1.0, 1.1
    assert f"{path}:17:46: warning: claims.0.random_baseline.alpha" in out
    assert f"{own} of the 50 draws are the claimed circuit itself" in out
    doc = json.loads((reports / "h.json").read_text())
    (claim,) = doc["claims"]
    (warning,) = claim["warnings"]
    assert warning["rule"] == "random-pool" and warning["where"] == f"{path}:17:46"
    assert warning["path"] == "claims.0.random_baseline.alpha" and POOL in warning["message"]
    p_min = smallest_p_value(50, own)
    assert claim["details"]["p_value"] >= p_min  # the p-value honestly cannot go below what the warning says
    assert claim["details"]["random_pool"] == 6 and claim["details"]["random_distinct"] == 6
    assert "**Warning** (random-pool" in (reports / "h.md").read_text()
    assert '<p class="warning"><strong>Warning</strong> (random-pool' in (reports / "h.html").read_text()


def test_a_reachable_alpha_gives_no_warning_and_claims_without_warnings_have_an_empty_list(write_yaml, tmp_path):
    text = SINGLE_HEAD.replace('components: ["1.0"]', 'components: ["0.0", "1.0", "1.1"]').replace(
        "{n: 50, seed: 1, alpha: 0.05}", "{n: 200, seed: 1, alpha: 0.1}")
    spec, smap = load_hypothesis(write_yaml(text))
    assert spec_warnings(spec, smap) == []  # C(6, 3) = 20 circuits: p can reach (1 + 10) / 201 < 0.1
    report = check(write_yaml(text))
    assert report.document["claims"][0]["warnings"] == []


def test_the_smallest_p_value_and_the_draws_that_reach_alpha():
    assert smallest_p_value(50, 0) == 1 / 51
    assert draws_needed(0.05, 6) is None  # 1/6 >= 0.05: no n is enough
    for alpha, distinct in ((0.05, 100), (0.1, 20), (0.01, 10**6)):
        n = draws_needed(alpha, distinct)
        assert n is not None
        assert smallest_p_value(n, n / distinct) < alpha <= smallest_p_value(n - 1, (n - 1) / distinct) + 1e-12
    # a big pool: only the +1 of the observed circuit limits it (n = 10 cannot reach 0.05: 1/11)
    found = random_pool_warning("c", ("claims", 0), n=10, alpha=0.05, pool=[str(i) for i in range(40)], size=3)
    assert found is not None and found.fix == f"raise 'n' to at least {draws_needed(0.05, math.comb(40, 3))}"
    assert random_pool_warning("c", (), n=100, alpha=0.05, pool=[str(i) for i in range(40)], size=3) is None
    assert random_pool_warning("c", (), n=10, alpha=None, pool=["a", "b"], size=1) is None


DLA = """
version: 1
model: caesar-easy
dataset: {kind: caesar, n_seqs: 50, seed: 1}
claims:
  - id: C2
    statement: The embeddings and the heads carry the attribution.
    kind: dla_share
    components: ["1.0", pos_embed]
    positions: all
    centering: batch_mean
    threshold: {at_least: 0.5}
  - id: F1
    statement: 1.0 reads what 0.0 writes.
    kind: composition
    writer: "0.0"
    reader: "1.0"
    mode: k
    scale: raw
    threshold: {at_least: 0.1}
"""


def test_a_zero_by_construction_share_and_a_raw_scale_threshold_are_warned_by_validate(write_yaml, capsys):
    path = write_yaml(DLA)
    assert main(["validate", str(path)]) == 0
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith(f"{path}:8:25: warning: claims.0.components.1: pos_embed's share is 0 by construction")
    assert lines[1].startswith("  fix: remove pos_embed from 'components'")
    assert lines[2].startswith(f"{path}:18:12: warning: claims.1.scale: the threshold >= 0.1 is on the raw")
    assert "scale: z" in lines[3] and "relative_to_max" in lines[3]


@pytest.mark.parametrize(("old", "new"), [
    ("centering: batch_mean", "centering: none"),
    ("scale: raw\n    threshold: {at_least: 0.1}", "scale: z\n    threshold: {at_least: 3}"),
])
def test_the_calibrated_forms_are_not_warned(write_yaml, old, new):
    assert old in DLA
    spec, smap = load_hypothesis(write_yaml(DLA.replace(old, new)))
    assert len(spec_warnings(spec, smap)) == 1


def test_the_model_free_warnings_reach_the_report(write_yaml):
    report = check(write_yaml(DLA))
    by_claim = {c["id"]: [w["rule"] for w in c["warnings"]] for c in report.document["claims"]}
    assert by_claim == {"C2": ["zero-by-construction"], "F1": ["uncalibrated-scale"]}
    assert report.claims["C2"].details.get("share_pos_embed", 0.0) == pytest.approx(0.0, abs=1e-9)
    assert "warning: claims.1.scale" in str(report)
