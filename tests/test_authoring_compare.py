"""Issue 17: ``compare`` answers "what changed". The verdicts that changed come first; a difference is
marked only when its interval excludes zero *and* its size is at least the min effect (statistical and
practical significance kept apart, and said so); every cell carries the variant's sentence."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from circuitcheck.api import compare
from circuitcheck.cli import main
from circuitcheck.comparison import comparison_document
from circuitcheck.comparison.document import claim_min_effect
from circuitcheck.comparison.variants import Comparison, VariantRun
from circuitcheck.errors import CircuitcheckError
from circuitcheck.plan.interventions import Measurement
from circuitcheck.report.compare_html import comparison_html
from circuitcheck.report.matrix import comparison_markdown, heading_anchors, terminal_matrix
from circuitcheck.spec.base import Statistics, Threshold
from circuitcheck.stats import SequenceStats, safe_ratio
from circuitcheck.verdict.paired import PairedDifference

# --- the rule: excludes zero, and at least the min effect ---------------------------------------------------


@pytest.mark.parametrize(
    ("d", "min_effect", "excludes", "large", "differs"),
    [
        (PairedDifference(0.02, 0.01, 0.03, "paired bootstrap"), 0.05, True, False, False),  # significant, small
        (PairedDifference(0.2, -0.05, 0.45, "paired bootstrap"), 0.05, False, True, False),  # large, uncertain
        (PairedDifference(-0.2, -0.3, -0.1, "paired bootstrap"), 0.05, True, True, True),    # both, either sign
        (PairedDifference(0.02, 0.01, 0.03, "paired bootstrap"), 0.0, True, True, True),     # no min effect
        (PairedDifference(0.05, 0.05, 0.05, "exact"), 0.05, True, True, True),               # "at least" includes it
        (PairedDifference(float("nan"), float("nan"), float("nan"), "undefined"), 0.0, False, False, False),
    ],
)
def test_a_difference_differs_when_it_excludes_zero_and_is_large_enough(d, min_effect, excludes, large, differs):
    assert (d.excludes_zero, d.large_enough(min_effect), d.differs(min_effect)) == (excludes, large, differs)


def test_a_claim_s_own_min_effect_wins_over_the_command_s():
    assert claim_min_effect(SimpleNamespace(min_effect=0.2), 0.05) == 0.2
    assert claim_min_effect(SimpleNamespace(min_effect=None), 0.05) == 0.05
    assert claim_min_effect(SimpleNamespace(min_effect=None), None) == 0.0
    assert claim_min_effect(SimpleNamespace(), None) == 0.0  # a claim object without the key


# --- the document and its renderers, on hand-made runs --------------------------------------------------------


def _stats(values: list[float]) -> SequenceStats:
    per_seq = {"sum": torch.tensor(values, dtype=torch.float64), "n": torch.ones(len(values), dtype=torch.float64)}
    return SequenceStats(per_seq, lambda t: safe_ratio(t["sum"], t["n"]))


CLAIMS = {  # id -> (threshold, own min_effect, per-sequence values on model a, on model b)
    "flips": (Threshold(at_least=0.5), None, [0.6, 0.7, 0.65, 0.62], [0.3, 0.35, 0.32, 0.31]),
    "nudged": (Threshold(at_least=0.5), None, [0.8, 0.81, 0.82, 0.8], [0.82, 0.83, 0.84, 0.82]),
    "own-bar": (Threshold(between=(0.0, 1.0)), 0.5, [0.2, 0.25, 0.22, 0.21], [0.5, 0.55, 0.52, 0.51]),
}


def _variant(model: str, column: int) -> VariantRun:
    claims, measured = [], []
    for cid, (threshold, _, *values) in CLAIMS.items():
        stats = _stats(values[column])
        estimate = stats.estimate()
        verdict = "pass" if threshold.passes(estimate) else "fail"
        claims.append({"id": cid, "verdict": verdict, "as_expected": verdict == "pass", "estimate": estimate,
                       "ci_low": estimate - 0.01, "ci_high": estimate + 0.01, "expect": "holds",
                       "sentence": f"{cid} on {model}: found {estimate:.3f}."})
        measured.append(SimpleNamespace(claim_id=cid, measurement=Measurement(estimate, "found", {}, stats)))
    doc = {"claims": claims, "provenance": {"dataset_tokens_sha256": "same"},
           "summary": {"passed": 1, "total": len(claims)}}
    return VariantRun(model, SimpleNamespace(document=doc, result=SimpleNamespace(claims=measured)))  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def handmade() -> Comparison:
    spec_claims = [
        SimpleNamespace(id=cid, kind="ablation", statement=f"The {cid} claim.", threshold=t, metric_name="accuracy",
                        measures="accuracy, relative drop", min_effect=own)
        for cid, (t, own, *_values) in CLAIMS.items()
    ]
    spec = SimpleNamespace(statistics=Statistics(bootstrap=200), claims=spec_claims, name="made")
    return Comparison(Path("made.yaml"), spec, (_variant("a", 0), _variant("b", 1)))


def test_the_document_lists_the_verdicts_that_changed_and_marks_only_differences_that_matter(handmade):
    doc = comparison_document(handmade, min_effect=0.05)
    assert doc["summary"]["changed"] == [
        {"claim": "flips", "variant": "b", "against": "a", "from": "pass", "to": "fail", "from_mark": "PASS",
         "to_mark": "FAIL"}
    ]
    by_id = {c["id"]: c for c in doc["claims"]}
    nudged = by_id["nudged"]["differences"][0]
    # +0.02 on every sequence: the paired interval excludes zero, but it is under the min effect 0.05
    assert nudged["excludes_zero"] and not nudged["large_enough"] and not nudged["differs"]
    assert nudged["min_effect"] == 0.05
    own = by_id["own-bar"]["differences"][0]  # +0.3, but the claim's own min_effect is 0.5
    assert own["excludes_zero"] and own["min_effect"] == 0.5 and not own["differs"]
    assert doc["summary"]["differing"] == [{"claim": "flips", "variant": "b"}]
    assert doc["min_effect"] == 0.05
    assert by_id["flips"]["cells"]["b"]["sentence"] == "flips on b: found 0.320."
    assert by_id["flips"]["measures"] == "accuracy, relative drop"
    # without a min effect the same numbers differ wherever the interval excludes zero
    plain = comparison_document(handmade)
    assert [d["claim"] for d in plain["summary"]["differing"]] == ["flips", "nudged"]  # own-bar keeps its 0.5


def test_the_terminal_opens_with_the_verdicts_that_changed_and_their_sentences(handmade):
    text = terminal_matrix(comparison_document(handmade, min_effect=0.05))
    lines = text.splitlines()
    assert lines[0] == "made-compare: 3 claims x 2 variants (differences against a)"
    assert lines[2] == "Verdicts that changed against a: 1."
    assert re.match(r"flips\s+b\s+FAIL\s+PASS on a\s+0\.6425 -> 0\.32\s+>= 0\.5$", lines[5])
    assert lines[6] == "  flips on b: FAIL: flips on b: found 0.320."
    assert lines.index("All claims:") > 6
    assert "+0.02 [+0.02, +0.02] (below 0.05)" in text
    assert "statistical significance" in text and "practical significance" in text
    assert "The two are separate questions" in text
    assert "min effect 0.05, from --min-effect; claims' own min_effect: own-bar 0.5" in text


def test_no_changed_verdicts_is_said_plainly(handmade):
    doc = comparison_document(handmade)
    doc["summary"]["changed"] = []
    doc["runs"] = {"a": None, "b": None}
    text = terminal_matrix(doc)
    assert "Verdicts that changed against a: none." in text
    assert "(practical significance; no min effect: any size counts; claims' own min_effect: own-bar 0.5)" in text
    assert "None: every claim that ran on two variants has the same verdict on each." in comparison_markdown(doc)
    html = comparison_html(doc, {})
    assert "none. Every claim that ran on two variants has the same verdict on each.</p>" in html


def test_the_markdown_opens_with_what_changed_and_every_cell_has_its_sentence(handmade):
    md = comparison_markdown(comparison_document(handmade, min_effect=0.05))
    changed, matrix, found = (md.index(f"## {h}") for h in
                              ("Verdicts that changed", "All claims", "What each variant found"))
    assert changed < matrix < found
    assert "- **flips** on `b`: FAIL (was PASS on `a`; estimate 0.6425 -> 0.32, threshold &gt;= 0.5). " \
           "flips on b: found 0.320." in md
    assert "| flips ([sentences](#flips)) |" in md and "| own-bar ([sentences](#own-bar)) |" in md
    for cid in CLAIMS:
        for model in ("a", "b"):
            assert f"{cid} on {model}: found" in md[found:]
    assert "### nudged\n\n> The nudged claim.\n\n- `a`: PASS: nudged on a: found 0.808." in md
    assert "(below 0.05)" in md


def test_markdown_links_follow_github_s_heading_anchors():
    assert heading_anchors(["All claims", "C3-head-1.0", "all claims", "T_1"]) == [
        "all-claims", "c3-head-10", "all-claims-1", "t_1"
    ]


def test_the_html_opens_with_what_changed_and_every_cell_carries_its_sentence(handmade):
    doc = comparison_document(handmade, min_effect=0.05)
    doc["runs"] = {"a": None, "b": None}  # the hand-made runs have no full reports to lay out below
    html = comparison_html(doc, {})
    assert html.index("<h2>Verdicts that changed</h2>") < html.index("<h2>Claims x variants</h2>")
    assert html.count('<details class="why"><summary>what was found</summary>') == 6  # 3 claims x 2 variants
    assert "flips on b: found 0.320." in html.split("<h2>Claims x variants</h2>")[0]  # in the changed table too
    assert "excludes zero, below the min effect 0.05" in html
    assert html.count('<span class="flag">differs</span>') == 1


# --- on real models, through the command line ------------------------------------------------------------------

PAIR = """
version: 1
name: pair
model: trigram
dataset: {kind: trigram, n_seqs: 100, seed: 2024, density: 0.05}
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
    threshold: {between: [0.3, 1.0]}
  - id: qk
    statement: The QK circuit reads off trigram prefixes.
    kind: qk_token_pairs
    layer: 0
    head: 0
    pairs: trigram_prefixes
    top_k: per_query
    threshold: {at_least: 0.6}
  - id: order
    statement: Later keys score higher.
    kind: qk_positional_order
    layer: 0
    head: 0
    direction: increasing
    threshold: {at_least: 0.9}
"""


@pytest.fixture(scope="module")
def pair_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("pair") / "pair.yaml"
    path.write_text(PAIR.lstrip("\n"))
    return path


def test_compare_opens_with_the_claims_whose_verdict_changed(pair_file, tmp_path, capsys):
    # qk reads 0.716 on trigram and 0.551 on trigram-attn-only (README), so it passes one and fails the other.
    args = ["compare", str(pair_file), "--model", "trigram", "--model", "trigram-attn-only", "--report-dir",
            str(tmp_path), "--min-effect", "0.2"]
    assert main(args) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[2] == "Verdicts that changed against trigram: 1."
    assert out[5].startswith("qk ") and "FAIL" in out[5] and "PASS on trigram" in out[5]
    assert out[6].startswith("  qk on trigram-attn-only: FAIL: ")
    doc = json.loads((tmp_path / "pair-compare.json").read_text())
    assert [(c["claim"], c["from"], c["to"]) for c in doc["summary"]["changed"]] == [("qk", "pass", "fail")]
    qk = next(c for c in doc["claims"] if c["id"] == "qk")["differences"][0]
    assert qk["basis"] == "exact" and qk["excludes_zero"] and not qk["large_enough"]  # -0.164, under 0.2
    assert all(d["claim"] != "qk" for d in doc["summary"]["differing"])
    md = (tmp_path / "pair-compare.md").read_text()
    assert md.index("## Verdicts that changed") < md.index("## All claims")
    assert "(below 0.2)" in md


def test_fail_on_difference_respects_the_min_effect(pair_file, tmp_path):
    base = ["compare", str(pair_file), "--model", "trigram", "--model", "trigram-attn-only", "--report-dir",
            str(tmp_path), "--quiet", "--fail-on-difference"]
    assert main([*base, "--min-effect", "0.5"]) == 0  # no difference is that large
    assert main(base) == 1  # qk's exact -0.164 is a difference when any size counts


def test_a_claim_s_own_min_effect_is_read_from_the_file(pair_file, tmp_path):
    text = pair_file.read_text().replace("    threshold: {at_least: 0.6}", "    min_effect: 0.1\n"
                                         "    threshold: {at_least: 0.6}")
    path = tmp_path / "own.yaml"
    path.write_text(text)
    report = compare(path, ["trigram", "trigram-attn-only"], min_effect=0.5)
    assert ("qk", "trigram-attn-only") in report.differing  # 0.164 >= its own 0.1, whatever the command says
    assert report.changed == [("qk", "trigram-attn-only")]
    assert "1 changed" in repr(report)


def test_a_bad_min_effect_is_refused(pair_file, capsys):
    with pytest.raises(SystemExit) as info:
        main(["compare", str(pair_file), "--model", "trigram", "--model", "trigram-attn-only", "--min-effect", "-1"])
    assert info.value.code == 2
    assert "expected a finite number >= 0, got -1" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["compare", str(pair_file), "--min-effect", "lots"])
    assert "expected a number >= 0, got 'lots'" in capsys.readouterr().err
    with pytest.raises(CircuitcheckError, match="min_effect must be a finite number >= 0, got nan"):
        compare(pair_file, ["trigram", "trigram-attn-only"], min_effect=float("nan"))
