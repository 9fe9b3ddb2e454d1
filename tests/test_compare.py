"""Comparing model variants: the paired bootstrap against hand computations, not-applicable
claims, the comparison document and its renderers, the CLI's exit codes, and progress output."""

from __future__ import annotations

import io
import json
import math
import shutil
from pathlib import Path

import pytest
import torch

from circuitcheck.cli import main
from circuitcheck.comparison import compare_file, comparison_document
from circuitcheck.plan.interventions import Measurement
from circuitcheck.report.matrix import comparison_markdown, terminal_matrix
from circuitcheck.report.progress import Tracker, progress_wanted
from circuitcheck.spec.base import Statistics
from circuitcheck.stats import SequenceStats, safe_ratio
from circuitcheck.verdict.judge import claim_seed, interval
from circuitcheck.verdict.paired import paired_difference, paired_stats, unpaired_difference
from tests.conftest import REPO


def mean_stats(values: list[float]) -> SequenceStats:
    """One example per sequence; the statistic is the mean."""
    per_seq = {"sum": torch.tensor(values, dtype=torch.float64), "n": torch.ones(len(values), dtype=torch.float64)}
    return SequenceStats(per_seq, lambda t: safe_ratio(t["sum"], t["n"]))


def measured(stats: SequenceStats | None, estimate: float | None = None) -> Measurement:
    value = stats.estimate() if stats is not None else float(estimate if estimate is not None else 0.0)
    return Measurement(value, "", {}, stats, exact=stats is None)


# --- the paired bootstrap -------------------------------------------------------------------


def test_two_sequences_give_exactly_the_three_paired_resample_values():
    # Per-sequence differences are 1 and 0. A paired resample of two sequences takes (1,1), (1,0), (0,1) or (0,0):
    # mean difference 1, 0.5, 0.5 or 0, with probabilities 1/4, 1/2, 1/4. An unpaired resample could give 10 - 0.
    variant, reference = mean_stats([10.0, 0.0]), mean_stats([9.0, 0.0])
    draws = paired_stats(variant, reference).bootstrap(4000, seed=7)
    values, counts = torch.unique(draws, return_counts=True)
    assert values.tolist() == [0.0, 0.5, 1.0]
    assert counts.double().div(4000).tolist() == pytest.approx([0.25, 0.5, 0.25], abs=0.03)
    d = paired_difference(measured(variant), measured(reference), "c", Statistics(bootstrap=4000, seed=7))
    assert (d.estimate, d.ci_low, d.ci_high, d.basis) == (0.5, 0.0, 1.0, "paired bootstrap")
    assert not d.excludes_zero


def test_a_constant_shift_has_a_zero_width_paired_interval_though_the_separate_intervals_overlap():
    values = torch.linspace(0.0, 1.0, 40).pow(2).tolist()
    variant, reference = mean_stats(values), mean_stats([v - 0.1 for v in values])
    stats = Statistics(bootstrap=500, seed=3)
    d = paired_difference(measured(variant), measured(reference), "shift", stats)
    assert d.estimate == pytest.approx(0.1) and d.ci_low == pytest.approx(0.1) and d.ci_high == pytest.approx(0.1)
    assert d.excludes_zero
    seed = claim_seed(stats.seed, "shift")
    lo_v, _ = interval(variant.bootstrap(500, seed), 0.95)
    _, hi_r = interval(reference.bootstrap(500, seed), 0.95)
    assert lo_v < hi_r  # two separate intervals overlap: an unpaired comparison could not tell them apart


def test_paired_draws_use_each_variants_own_resamples():
    # Against a reference whose statistic is always 0, the paired draws are the variant's own bootstrap draws.
    variant = mean_stats([0.3, 0.9, 0.1, 0.5, 0.7])
    zero = SequenceStats({"n": torch.ones(5, dtype=torch.float64)}, lambda t: torch.zeros_like(t["n"]))
    seed = claim_seed(0, "T1")
    assert torch.equal(paired_stats(variant, zero).bootstrap(300, seed), variant.bootstrap(300, seed))


def test_ratio_statistics_are_differenced_after_each_ratio():
    def ratio(per_seq: dict[str, list[float]]) -> SequenceStats:
        return SequenceStats({k: torch.tensor(v, dtype=torch.float64) for k, v in per_seq.items()},
                             lambda t: safe_ratio(t["both"], t["union"]))

    variant = ratio({"both": [1, 2, 3], "union": [2, 2, 4]})
    reference = ratio({"both": [0, 1, 1], "union": [1, 4, 1]})
    joint = paired_stats(variant, reference)
    # Hand computation for the resample that takes sequence 0 twice and sequence 2 once:
    # variant (1+1+3)/(2+2+4) = 5/8, reference (0+0+1)/(1+1+1) = 1/3.
    weights = torch.tensor([2.0, 0.0, 1.0], dtype=torch.float64)
    totals = {k: weights @ v for k, v in joint.per_seq.items()}
    assert float(joint.statistic(totals)) == pytest.approx(5 / 8 - 1 / 3)
    assert joint.estimate() == pytest.approx(6 / 8 - 2 / 6)


def test_unpaired_differences_resample_the_variants_independently():
    same = mean_stats(torch.linspace(0.0, 1.0, 30).tolist())
    stats = Statistics(bootstrap=1000, seed=1)
    paired = paired_difference(measured(same), measured(same), "c", stats)
    unpaired = unpaired_difference(measured(same), measured(same), "c", stats)
    assert (paired.ci_low, paired.ci_high) == (0.0, 0.0)
    assert unpaired.basis == "unpaired bootstrap" and unpaired.estimate == 0.0
    # Two independent means of 30 values of standard deviation 0.31 differ with standard error 0.31 * sqrt(2 / 30).
    half_width = 1.96 * float(torch.linspace(0.0, 1.0, 30).std(correction=0)) * math.sqrt(2 / 30)
    assert (
        unpaired.ci_low == pytest.approx(-half_width, rel=0.15)
        and unpaired.ci_high == pytest.approx(half_width, rel=0.15)
    )
    constant = unpaired_difference(measured(mean_stats([0.7] * 5)), measured(mean_stats([0.5] * 8)), "c", stats)
    assert (constant.ci_low, constant.ci_high) == (pytest.approx(0.2), pytest.approx(0.2))


def test_weight_based_and_undefined_differences():
    stats = Statistics()
    exact = paired_difference(measured(None, 0.7), measured(None, 0.5), "T3", stats)
    assert (exact.basis, exact.ci_low, exact.ci_high) == ("exact", pytest.approx(0.2), pytest.approx(0.2))
    assert exact.excludes_zero
    mixed = paired_difference(measured(mean_stats([1.0, 2.0])), measured(None, 0.5), "x", stats)
    assert mixed.basis == "undefined" and not mixed.excludes_zero
    nan = paired_difference(measured(None, math.nan), measured(None, 0.5), "x", stats)
    assert nan.basis == "undefined" and math.isnan(nan.estimate)
    with pytest.raises(ValueError, match="same sequences: 2 vs 3"):
        paired_stats(mean_stats([1.0, 2.0]), mean_stats([1.0, 2.0, 3.0]))


# --- variants on real models ----------------------------------------------------------------

SMALL = """
version: 1
name: small
model: trigram
dataset: {kind: trigram, n_seqs: 200, seed: 2024, density: 0.05}
positions:
  Y: {role: Y}
claims:
  - id: head-needed
    statement: Mean-ablating the head destroys trigram completion.
    kind: ablation
    mode: necessity
    components: ["0.0"]
    method: mean
    positions: Y
    metric: accuracy
    effect: relative_drop
    threshold: {at_least: 0.5}
  - id: mlp-rung
    statement: With the MLP mean-ablated the model completes <fewer> trigrams.
    kind: replacement
    replace: [{component: mlp0, with: mean}]
    positions: Y
    metric: accuracy
    threshold: {at_most: 0.95}
  - id: full-rung
    statement: The full model completes trigrams.
    kind: replacement
    replace: []
    positions: Y
    metric: accuracy
    threshold: {at_least: 0.5}
  - id: ladder
    statement: MLP-ablated below full.
    kind: ordering
    claims: [mlp-rung, full-rung]
    direction: increasing
    threshold: {at_least: 1.0}
  - id: qk
    statement: The QK circuit reads off trigram prefixes.
    kind: qk_token_pairs
    layer: 0
    head: 0
    pairs: trigram_prefixes
    top_k: per_query
    threshold: {at_least: 0.3}
"""


@pytest.fixture(scope="module")
def small_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("compare")
    (folder / "small.yaml").write_text(SMALL.lstrip("\n"))
    shutil.copytree(REPO / "models" / "trigram", folder / "trigram-copy")
    no_task = folder / "no-task"
    shutil.copytree(REPO / "models" / "trigram", no_task)
    card = json.loads((no_task / "card.json").read_text())
    card.pop("task")
    (no_task / "card.json").write_text(json.dumps(card))
    other_data = folder / "other-data"  # the same weights, but its card plants another trigram set
    shutil.copytree(REPO / "models" / "trigram", other_data)
    card = json.loads((other_data / "card.json").read_text())
    card["task"] = {k: v for k, v in card["task"].items() if k != "trigrams"} | {"trigram_seed": 1}
    (other_data / "card.json").write_text(json.dumps(card))
    return folder / "small.yaml"


@pytest.fixture(scope="module")
def compared(small_file: Path) -> dict:
    copy = str(small_file.parent / "trigram-copy")
    return comparison_document(
        compare_file(small_file, ["trigram", "trigram-attn-only", copy, "./no-task", "./other-data"])
    )


def _claim(doc: dict, claim_id: str) -> dict:
    return next(c for c in doc["claims"] if c["id"] == claim_id)


def test_a_model_compared_with_a_copy_of_itself_differs_nowhere(compared):
    copy = compared["variants"][2]
    for claim in compared["claims"]:
        d = next(d for d in claim["differences"] if d["variant"] == copy)
        assert (d["estimate"], d["ci_low"], d["ci_high"], d["excludes_zero"]) == (0.0, 0.0, 0.0, False), claim["id"]
    assert all(c != copy for c in (x["variant"] for x in compared["summary"]["differing"]))


def test_claims_that_cannot_apply_are_not_applicable_with_the_compilers_reason(compared):
    mlp = _claim(compared, "mlp-rung")["cells"]["trigram-attn-only"]
    assert mlp["status"] == "not_applicable"
    assert "small.yaml:" in mlp["reason"] and "attention-only" in mlp["reason"] and "mlp0" in mlp["reason"]
    ladder = _claim(compared, "ladder")["cells"]["trigram-attn-only"]
    assert ladder == {"status": "not_applicable", "reason": "depends on mlp-rung, which cannot apply to this model"}
    d = next(d for d in _claim(compared, "mlp-rung")["differences"] if d["variant"] == "trigram-attn-only")
    assert d["basis"] == "not applicable" and d["estimate"] is None
    assert _claim(compared, "head-needed")["cells"]["trigram-attn-only"]["status"] == "run"
    assert compared["runs"]["trigram-attn-only"]["summary"]["total"] == 3


def test_a_variant_whose_data_cannot_be_built_is_not_applicable_everywhere(compared):
    cells = [c["cells"]["./no-task"] for c in compared["claims"]]
    assert all(c["status"] == "not_applicable" and "no trigram task" in c["reason"] for c in cells)
    assert compared["runs"]["./no-task"] is None


def test_differences_are_paired_on_the_same_sequences(compared):
    hashes = compared["dataset_tokens_sha256"]
    assert hashes["trigram"] == hashes["trigram-attn-only"] is not None
    head = _claim(compared, "head-needed")
    cells = head["cells"]
    d = next(d for d in head["differences"] if d["variant"] == "trigram-attn-only")
    assert d["estimate"] == pytest.approx(cells["trigram-attn-only"]["estimate"] - cells["trigram"]["estimate"])
    assert d["basis"] == "paired bootstrap" and d["ci_low"] <= d["estimate"] <= d["ci_high"]
    qk = next(d for d in _claim(compared, "qk")["differences"] if d["variant"] == "trigram-attn-only")
    assert qk["basis"] == "exact" and qk["ci_low"] == qk["ci_high"] == qk["estimate"]


def test_variants_that_saw_different_sequences_are_compared_unpaired(compared):
    hashes = compared["dataset_tokens_sha256"]
    assert hashes["./other-data"] != hashes["trigram"]
    d = next(d for d in _claim(compared, "full-rung")["differences"] if d["variant"] == "./other-data")
    assert d["basis"] == "unpaired bootstrap" and d["ci_low"] < d["estimate"] < d["ci_high"]


def test_renderers_show_the_matrix_stars_and_reasons(compared):
    text = terminal_matrix(compared)
    assert text.splitlines()[0].startswith("small-compare: 5 claims x 5 variants (differences against trigram)")
    assert " unpaired" in text
    assert "mlp-rung on trigram-attn-only: not applicable:" in text
    md = comparison_markdown(compared)
    assert "| claim | trigram | trigram-attn-only |" in md
    assert md.count("\n|") == len(compared["claims"]) + 2


# --- the command line -------------------------------------------------------------------------


def test_compare_cli_writes_every_report_and_exits_0(small_file, tmp_path, capsys):
    code = main(["compare", str(small_file), "--model", "trigram", "--model", "trigram-attn-only",
                 "--report-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0
    assert "head-needed" in out and "reports:" in out
    assert {p.name for p in tmp_path.iterdir()} == {"small-compare.md", "small-compare.json", "small-compare.html"}
    doc = json.loads((tmp_path / "small-compare.json").read_text())
    assert doc["variants"] == ["trigram", "trigram-attn-only"] and doc["schema_version"] == 1


def test_fail_on_difference_exits_1_only_when_variants_differ(small_file, tmp_path):
    base = [
        "compare",
        str(small_file),
        "--report-dir",
        str(tmp_path),
        "--quiet",
        "--fail-on-difference",
        "--model",
        "trigram",
    ]
    assert main([*base, "--model", str(small_file.parent / "trigram-copy")]) == 0
    assert main([*base, "--model", "trigram-attn-only"]) == 1
    differing = json.loads((tmp_path / "small-compare.json").read_text())["summary"]["differing"]
    assert {"claim": "qk", "variant": "trigram-attn-only"} in differing


def test_variants_declared_in_the_file(tmp_path, capsys):
    path = tmp_path / "v.yaml"
    path.write_text(
        SMALL.lstrip("\n").replace("model: trigram\n", "model: trigram\nvariants: [trigram, trigram-attn-only]\n")
    )
    assert main(["compare", str(path), "--report-dir", str(tmp_path), "--quiet"]) == 0
    assert json.loads((tmp_path / "small-compare.json").read_text())["variants"] == ["trigram", "trigram-attn-only"]


@pytest.mark.parametrize(
    ("models", "message"),
    [
        (["trigram"], "compare needs at least two models"),
        (["trigram", "trigram"], "model 'trigram' is given twice"),
        (["trigram", "trigarm"], "no model 'trigarm'"),
    ],
)
def test_compare_usage_errors_exit_2_with_one_line(small_file, tmp_path, capsys, models, message):
    args = [a for m in models for a in ("--model", m)]
    assert main(["compare", str(small_file), *args, "--report-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    first, *rest = err.strip().splitlines()  # the error, then at most its fix
    assert first.startswith(message) and [r.startswith("  fix: ") for r in rest] in ([], [True])
    assert not list(tmp_path.iterdir())


def test_an_unwritable_report_dir_is_one_line_exit_2(small_file, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    args = ["compare", str(small_file), "--model", "trigram", "--model", "trigram-attn-only", "--quiet"]
    assert main([*args, "--report-dir", str(blocker / "reports")]) == 2
    err = capsys.readouterr().err
    assert "cannot write the reports" in err and len(err.strip().splitlines()) == 1


# --- progress ----------------------------------------------------------------------------------


def test_no_progress_when_quiet_in_ci_or_piped(monkeypatch):
    monkeypatch.setattr("sys.stdout.isatty", lambda: True, raising=False)
    monkeypatch.setattr("sys.stderr.isatty", lambda: True, raising=False)
    monkeypatch.delenv("CI", raising=False)
    assert progress_wanted(quiet=False)
    assert not progress_wanted(quiet=True)
    monkeypatch.setenv("CI", "true")
    assert not progress_wanted(quiet=False)
    monkeypatch.delenv("CI")
    monkeypatch.setattr("sys.stdout.isatty", lambda: False, raising=False)
    assert not progress_wanted(quiet=False)


def test_tracker_draws_a_bar_only_when_enabled():
    from rich.console import Console

    for enabled in (True, False):
        buffer = io.StringIO()
        with Tracker(2, enabled, Console(file=buffer, force_terminal=True, width=80)) as tracker:
            with tracker.step("compiling variant-a"):
                pass
            tracker.advance()
        assert ("variant-a" in buffer.getvalue() or "2/2" in buffer.getvalue()) == enabled
