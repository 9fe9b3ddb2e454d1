"""Checkpoint series (``compare --series``): ordering by step, the first step from which a claim passes and stays
passing, the flips (against a naive reading of the definitions), and a small run end to end."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from circuitcheck.cli import main
from circuitcheck.comparison.series import first_stable_pass, flips, series_models, step_of
from circuitcheck.report.series_svg import BOTTOM, HEIGHT, TOP, series_chart
from tests.conftest import REPO
from tests.test_compare import SMALL


def _model(folder: Path, card: dict | None = None) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    if card is not None:
        (folder / "training.json").write_text(json.dumps(card))
    return folder


def test_folder_names_order_by_their_last_integer_not_as_text(tmp_path):
    for name in ("step-10", "step-9", "step-100", "step-0"):
        _model(tmp_path / "ckpts" / name)
    (tmp_path / "ckpts" / "notes").mkdir()  # not a model: skipped
    names, steps = series_models("ckpts", tmp_path)
    assert names == ["ckpts/step-0", "ckpts/step-9", "ckpts/step-10", "ckpts/step-100"]
    assert list(steps.values()) == [0, 9, 10, 100]
    globbed, _ = series_models("ckpts/step-1*", tmp_path)
    assert globbed == ["ckpts/step-10", "ckpts/step-100"]


def test_a_step_in_training_json_wins_over_the_folder_name(tmp_path):
    _model(tmp_path / "a-5", {"step": 700})
    _model(tmp_path / "b-900")
    assert step_of(tmp_path / "a-5") == 700
    assert series_models("*", tmp_path)[0] == ["a-5", "b-900"]


def test_without_a_step_everywhere_the_order_found_is_kept(tmp_path):
    _model(tmp_path / "late")
    _model(tmp_path / "early-3")
    names, steps = series_models("*", tmp_path)
    assert names == ["early-3", "late"] and set(steps.values()) == {None}


@pytest.mark.parametrize("pattern", ["nothing-*", "empty", "one-*"])
def test_too_few_models_is_an_error_with_a_fix(tmp_path, pattern):
    (tmp_path / "empty").mkdir()
    _model(tmp_path / "one-1")
    with pytest.raises(Exception, match=r"--series .*found.*\n  fix: ") as err:
        series_models(pattern, tmp_path)
    assert type(err.value).__name__ == "CircuitcheckError"


def _naive_first_stable(passes: list[bool]) -> int | None:
    # By the definition: the smallest i with passes[i:] all true and non-empty.
    return next((i for i in range(len(passes)) if all(passes[i:])), None)


def _naive_flips(verdicts: list[str | None]) -> list[int]:
    ran = [(i, v) for i, v in enumerate(verdicts) if v is not None]
    return [i for (_, a), (i, b) in zip(ran, ran[1:], strict=False) if a != b]


SEQUENCES = [
    ["fail", "fail", "pass", "pass"],
    ["pass", "fail", "pass", "pass", "fail"],
    ["inconclusive", "pass", "fail", "pass"],
    ["pass", None, "pass"],
    ["fail", None, "fail", "pass"],
    [],
    ["pass"],
]


@pytest.mark.parametrize("verdicts", SEQUENCES)
def test_first_pass_that_stays_and_flips_match_a_naive_reading(verdicts):
    passes = [v == "pass" for v in verdicts]
    assert first_stable_pass(passes) == _naive_first_stable(passes)
    assert flips(verdicts) == _naive_flips(verdicts)


def test_known_answers():
    assert first_stable_pass([False, True, False, True, True]) == 3
    assert first_stable_pass([True, True, False]) is None
    assert flips(["fail", "pass", "pass", "fail"]) == [1, 3]


def test_series_and_model_together_is_one_line_and_a_fix(tmp_path, capsys):
    path = tmp_path / "small.yaml"
    path.write_text(SMALL.lstrip("\n"))
    code = main(["compare", str(path), "--series", str(tmp_path / "x-*"), "--model", "trigram",
                 "--report-dir", str(tmp_path / "out")])
    first, fix = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and "--series and --model cannot be used together" in first and fix.startswith("  fix: ")


def test_a_series_end_to_end(tmp_path, monkeypatch):
    # Two copies of the full model and one of the attention-only one, named so that text order (step-10 < step-2 <
    # step-9) is not step order.
    shutil.copytree(REPO / "models" / "trigram", tmp_path / "ckpts" / "step-10")
    shutil.copytree(REPO / "models" / "trigram-attn-only", tmp_path / "ckpts" / "step-2")
    shutil.copytree(REPO / "models" / "trigram", tmp_path / "ckpts" / "step-9")
    path = tmp_path / "small.yaml"
    path.write_text(SMALL.lstrip("\n"))
    monkeypatch.chdir(tmp_path)
    code = main(["compare", str(path), "--series", "ckpts/step-*", "--report-dir", "out", "--quiet"])
    assert code == 0
    doc = json.loads((tmp_path / "out" / "small-compare.json").read_text())
    assert doc["variants"] == ["ckpts/step-2", "ckpts/step-9", "ckpts/step-10"]
    series = doc["series"]
    assert series["x"] == "step" and [c["id"] for c in series["claims"]] == [c["id"] for c in doc["claims"]]
    for claim, matrix in zip(series["claims"], doc["claims"], strict=True):
        assert [p["step"] for p in claim["points"]] == [2, 9, 10]
        verdicts = [matrix["cells"][v].get("verdict") for v in doc["variants"]]
        assert [p["verdict"] for p in claim["points"]] == verdicts
        assert [p["estimate"] for p in claim["points"]] == [matrix["cells"][v].get("estimate") for v in doc["variants"]]
        passes = [v == "pass" for v in verdicts]
        first = _naive_first_stable(passes)
        assert claim["passes_from"] == (None if first is None else [2, 9, 10][first])
        assert [f["step"] for f in claim["flips"]] == [[2, 9, 10][i] for i in _naive_flips(verdicts)]
        assert claim["points"][1]["verdict"] == claim["points"][2]["verdict"]  # the same weights
    by_id = {c["id"]: c for c in series["claims"]}
    # The attention-only model (step 2) has no MLP: mlp-rung does not run there, so it passes only from step 9,
    # and a step that did not run is no flip.
    assert by_id["mlp-rung"]["points"][0]["verdict"] is None
    assert by_id["mlp-rung"]["passes_from"] == 9 and by_id["mlp-rung"]["flips"] == []

    html = (tmp_path / "out" / "small-compare.html").read_text()
    section = html.split("<h2>Series</h2>", 1)[1].split("<h2>", 1)[0]
    assert section.count("<svg") == len(series["claims"]) and "<polygon" in section
    assert "stroke-dasharray" in section  # the thresholds are numeric
    assert "<script" not in html.lower()
    md = (tmp_path / "out" / "small-compare.md").read_text()
    assert "## Series" in md and "| step | estimate | CI | verdict |" in md
    assert re.search(r"\| 10 \| [-0-9.]+ \| \[", md) and md.rstrip().endswith("-->")


def test_the_chart_keeps_a_huge_interval_inside_the_plot_and_draws_the_threshold():
    rows = [(0, 0.1, -0.2, 0.5, "fail"), (600, 3.4, 0.9, 94.0, "pass"), (800, 1.1, 0.98, 1.4, "pass")]
    points = [{"model": f"m{s}", "step": s, "estimate": e, "ci_low": lo, "ci_high": hi, "verdict": v}
              for s, e, lo, hi, v in rows]
    claim = {"id": "c<1>", "threshold": ">= 0.8", "points": points, "passes_from": 600, "flips": []}
    svg = series_chart(claim)
    ys = [float(y) for y in re.findall(r",(-?[\d.]+)", svg.split('<polygon points="')[1].split('"')[0])]
    assert min(ys) >= TOP - 1e-9 and max(ys) <= HEIGHT - BOTTOM + 1e-9
    assert svg.count("<circle") == 3 and svg.count("stroke-dasharray") == 1 and "c&lt;1&gt;" in svg
    assert "<script" not in svg
