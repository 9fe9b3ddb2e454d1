"""Issue 17: a range threshold, ``between: [low, high]``, judged like the equivalence bound ``within``:
pass when the whole interval lies inside the band, fail when it lies wholly outside, inconclusive otherwise."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from pydantic import ValidationError

from circuitcheck.authoring import hypothesis_schema
from circuitcheck.cli import main
from circuitcheck.plan.interventions import Measurement
from circuitcheck.report.svg import interval_bar, parse_band
from circuitcheck.run.execute import ClaimResult
from circuitcheck.spec.base import Threshold
from circuitcheck.spec.hypothesis import load_hypothesis
from circuitcheck.stats import SequenceStats
from circuitcheck.verdict.baseline import Baseline, against_baseline
from circuitcheck.verdict.judge import decide, judge
from circuitcheck.verdict.verdict import Verdict
from tests.conftest import VALID_FILE

BAND = Threshold(between=(0.4, 0.6))


@pytest.mark.parametrize(
    ("lo", "hi", "want"),
    [
        (0.45, 0.55, "pass"),    # wholly inside
        (0.4, 0.6, "pass"),      # the ends count as inside
        (0.1, 0.3, "fail"),      # wholly below
        (0.7, 0.9, "fail"),      # wholly above
        (0.3, 0.5, "inconclusive"),  # straddles the low end
        (0.5, 0.7, "inconclusive"),  # straddles the high end
        (0.3, 0.7, "inconclusive"),  # covers the band and more: not outside, not inside
    ],
)
def test_a_band_passes_inside_fails_outside_and_is_inconclusive_across_an_end(lo, hi, want):
    assert decide((lo + hi) / 2, lo, hi, BAND) == want


def test_the_issue_s_case_fails_where_at_most_passed():
    # "between 40% and 60%" written as at_most: 0.6 passed at 0.37; the band fails it.
    assert decide(0.37, 0.33, 0.41, Threshold(at_most=0.6)) == "pass"
    assert decide(0.37, 0.33, 0.39, BAND) == "fail"


def test_a_band_reads_as_words_and_is_neither_higher_nor_lower_is_better():
    assert str(BAND) == "between 0.4 and 0.6"
    assert BAND.band == (0.4, 0.6) and Threshold(within=0.1).band == (-0.1, 0.1) and Threshold(at_least=1).band is None
    assert not BAND.higher_is_better
    assert BAND.passes(0.4) and BAND.passes(0.6) and not BAND.passes(0.61) and not BAND.passes(0.39)


@pytest.mark.parametrize(
    ("threshold", "estimate", "margin"),
    [(BAND, 0.45, 0.05), (BAND, 0.58, 0.02), (BAND, 0.3, 0.1), (Threshold(at_least=0.5), 0.45, 0.05),
     (Threshold(within=0.1), -0.08, 0.02)],
)
def test_the_margin_is_the_distance_to_the_nearest_bound(threshold, estimate, margin):
    assert threshold.margin(estimate) == pytest.approx(margin)


@pytest.mark.parametrize(
    ("threshold", "old", "now", "worse"),
    [
        (BAND, 0.5, 0.58, 0.08),              # the band's centre is 0.5: moving away worsens
        (BAND, 0.58, 0.5, -0.08),             # moving to the centre is an improvement
        (BAND, 0.45, 0.55, 0.0),              # as far from the centre on the other side
        (Threshold(within=0.1), -0.02, 0.05, 0.03),
        (Threshold(at_least=0.5), 0.8, 0.7, 0.1),
        (Threshold(at_most=0.5), 0.2, 0.3, 0.1),
    ],
)
def test_a_baseline_worsens_as_the_estimate_leaves_the_band_s_centre(threshold, old, now, worse):
    assert threshold.worsened_by(old, now) == pytest.approx(worse)
    v = Verdict(claim_id="c", kind="ablation", statement="s", verdict="pass", estimate=now, ci_low=now - 0.01,
                ci_high=now + 0.01, threshold=threshold, metric="m", sentence="Found.", details={},
                seed_figure=None, seconds=0.0)
    found = against_baseline(v, Baseline(Path("b.json"), {"c": old}), 0.0)
    assert found.baseline is not None and found.baseline.worsened_by == pytest.approx(worse)


class Claim:
    id, kind, statement, seed_figure, metric_name = "c", "ablation", "s", None, "accuracy"

    def __init__(self, threshold: Threshold) -> None:
        self.threshold = threshold


def _noisy(mean: float, n: int) -> ClaimResult:
    gen = torch.Generator().manual_seed(0)
    values = (torch.rand(n, generator=gen, dtype=torch.float64) < mean).double()
    stats = SequenceStats({"s": values, "n": torch.ones(n, dtype=torch.float64)}, lambda t: t["s"] / t["n"])
    return ClaimResult("c", Measurement(stats.estimate(), "found", {}, stats, n_examples=3 * n), 0.0)


def test_an_inconclusive_band_says_how_many_sequences_would_resolve_it():
    v = judge(Claim(BAND), _noisy(0.57, 80), _stats())
    assert v.verdict == "inconclusive" and v.ci_low < 0.6 < v.ci_high
    assert "is inconclusive against the threshold between 0.4 and 0.6" in v.sentence
    # The hint counts sequences (the unit of the bootstrap and of the dataset's n_seqs), not scored examples.
    assert "sequences (dataset n_seqs; now 80) would resolve it" in v.sentence
    margin = min(abs(v.estimate - 0.4), abs(v.estimate - 0.6))
    needed = math.ceil(80 * ((v.ci_high - v.ci_low) / 2 / margin) ** 2)
    assert f"a margin of {margin:.3g}: about {needed} sequences" in v.sentence


def _stats():
    from circuitcheck.spec.base import Statistics

    return Statistics()


@pytest.mark.parametrize(
    ("text", "message", "fix"),
    [
        ("{between: [0.6, 0.4]}", "'between' needs [low, high] with low < high, got [0.6, 0.4]",
         "write the smaller bound first: [0.4, 0.6]"),
        ("{between: [0.5, 0.5]}", "'between' needs [low, high] with low < high, got [0.5, 0.5]",
         "for a single value use a narrow band, e.g. [0.49, 0.51]"),
        ("{between: 0.5}", "expected a list of 2 values, got 0.5", "write 2 values in brackets, e.g. [0.4, 0.6]"),
        ("{between: [0.4, 0.5, 0.6]}", "expected a list of 2 values, got [0.4, 0.5, 0.6]",
         "write 2 values in brackets, e.g. [0.4, 0.6]"),
        ("{between: [0.4, .inf]}", "expected a finite number, got inf",
         "write a finite number: a bound of .nan or .inf cannot be passed or failed meaningfully"),
        ("{between: [0.4, 0.6], at_most: 0.6}",
         "give exactly one of 'at_least', 'at_most', 'between' or 'within' (got 'at_most' and 'between')",
         "e.g. {at_least: 0.5}, {at_most: 0.1}, {between: [0.4, 0.6]} or {within: 0.05}"),
        ("{}", "give exactly one of 'at_least', 'at_most', 'between' or 'within' (got none)",
         "e.g. {at_least: 0.5}, {at_most: 0.1}, {between: [0.4, 0.6]} or {within: 0.05}"),
    ],
)
def test_a_malformed_band_says_what_is_wrong_and_how_to_fix_it(write_yaml, text, message, fix):
    from circuitcheck.errors import SpecErrors

    with pytest.raises(SpecErrors) as info:
        load_hypothesis(write_yaml(VALID_FILE.replace("{at_least: 0.5}", text)))
    (err,) = info.value.errors
    assert err.path.startswith("claims.0.threshold") and err.where.line == 20
    assert (err.message, err.fix) == (message, fix)


def test_threshold_objects_refuse_a_bad_band_too():
    with pytest.raises(ValidationError, match="low < high"):
        Threshold(between=(0.6, 0.4))
    with pytest.raises(ValidationError, match="exactly one"):
        Threshold(between=(0.4, 0.6), within=0.1)


def test_the_schema_offers_between_as_a_pair_of_numbers():
    props = hypothesis_schema()["$defs"]["Threshold"]["properties"]["between"]
    pair = next(arm for arm in props["anyOf"] if arm.get("type") == "array")
    assert [item["type"] for item in pair["prefixItems"]] == ["number", "number"]
    assert pair["minItems"] == pair["maxItems"] == 2


def test_the_interval_bar_shades_the_band():
    assert parse_band("between 0.4 and 0.6") == (0.4, 0.6) and parse_band("within ±0.1") == (-0.1, 0.1)
    assert parse_band(">= 0.5") is None and parse_band(None) is None and parse_band("between a and b") is None
    svg = interval_bar(0.5, 0.45, 0.55, "between 0.4 and 0.6", "#000")
    assert svg.count('stroke-dasharray="3,2"') == 2 and "threshold between 0.4 and 0.6" in svg
    assert 'fill="#dafbe1"' in svg  # the passing zone


# --- a file using between validates and runs ------------------------------------------------------------------

BANDED = VALID_FILE.replace("n_seqs: 50", "n_seqs: 200").replace("method: zero", "method: mean")


@pytest.fixture(scope="module")
def banded_runs(tmp_path_factory) -> dict[str, dict]:
    """The same claim (T8 on the trigram model, 200 sequences: about 0.68) under three bands, run through the CLI."""
    folder = tmp_path_factory.mktemp("bands")
    docs = {}
    for name, band in {"inside": "[0.4, 0.95]", "below": "[0.05, 0.3]", "across": "[0.2, 0.68]"}.items():
        path = folder / f"{name}.yaml"
        path.write_text(BANDED.lstrip("\n").replace("{at_least: 0.5}", f"{{between: {band}}}"))
        assert main(["validate", str(path)]) == 0
        code = main(["run", str(path), "--report-dir", str(folder), "--quiet"])
        docs[name] = json.loads((folder / f"{name}.json").read_text()) | {"exit": code}
    return docs


def test_a_file_using_between_validates_and_runs(banded_runs):
    inside, below, across = (banded_runs[k] for k in ("inside", "below", "across"))
    assert (inside["exit"], below["exit"], across["exit"]) == (0, 1, 3)
    verdicts = [d["claims"][0]["verdict"] for d in (inside, below, across)]
    assert verdicts == ["pass", "fail", "inconclusive"]
    claim = inside["claims"][0]
    assert claim["threshold"] == "between 0.4 and 0.95"
    assert 0.4 <= claim["ci_low"] <= claim["ci_high"] <= 0.95
    assert "meets the threshold between 0.4 and 0.95" in claim["sentence"]
    assert below["claims"][0]["ci_low"] > 0.3
    assert across["claims"][0]["ci_low"] < 0.68 < across["claims"][0]["ci_high"]
