"""Baselines: an unchanged model passes, a degraded one is caught as a regression."""

from __future__ import annotations

import json
import shutil

from safetensors.torch import load_file, save_file

from circuitcheck.cli import main
from circuitcheck.zoo.load import zoo_root
from tests.conftest import HYPOTHESES

FILE = str(HYPOTHESES / "trigram.yaml")


def degraded_model(tmp_path):
    """The trigram model with its attention output scaled down: a planted regression."""
    src, dst = zoo_root() / "trigram", tmp_path / "degraded"
    dst.mkdir()
    shutil.copy(src / "card.json", dst / "card.json")
    state = load_file(str(src / "model.safetensors"))
    state["blocks.0.attn.o.weight"] = state["blocks.0.attn.o.weight"] * 0.4
    save_file(state, str(dst / "model.safetensors"))
    return dst


def test_unchanged_model_passes_and_degraded_model_regresses(tmp_path, capsys):
    baseline = tmp_path / "baseline.json"
    assert main(["baseline", FILE, "--out", str(baseline), "--report-dir", str(tmp_path), "--quiet"]) == 0
    stored = json.loads(baseline.read_text())
    assert set(stored["files"]["trigram"]["claims"]) >= {"T1", "T8"}

    again = main(["run", FILE, "--baseline", str(baseline), "--report-dir", str(tmp_path / "same"), "--quiet"])
    doc = json.loads((tmp_path / "same" / "trigram.json").read_text())
    assert all(c["baseline"]["worsened_by"] <= c["baseline"]["allowed"] for c in doc["claims"])
    assert again == doc["summary"]["exit_code"]
    assert not any("REGRESSION" in c["sentence"] for c in doc["claims"])

    code = main(["run", FILE, "--model", str(degraded_model(tmp_path)), "--baseline", str(baseline),
                 "--report-dir", str(tmp_path / "worse"), "--quiet"])
    doc = json.loads((tmp_path / "worse" / "trigram.json").read_text())
    regressed = [c["id"] for c in doc["claims"] if "REGRESSION" in c["sentence"]]
    assert code == 1 and "T3" not in regressed and regressed
    assert all(doc["claims"][i]["verdict"] == "fail" for i, c in enumerate(doc["claims"]) if c["id"] in regressed)
    capsys.readouterr()


def test_baseline_for_another_file_is_an_input_error(tmp_path, capsys):
    baseline = tmp_path / "b.json"
    baseline.write_text(json.dumps({"schema_version": 1, "files": {}}))
    assert main(["run", FILE, "--baseline", str(baseline), "--report-dir", str(tmp_path), "--quiet"]) == 2
    assert "no baseline for 'trigram'" in capsys.readouterr().err


PATCHING = """
version: 1
name: patching
model: trigram
dataset: {{kind: trigram, n_seqs: 200, seed: 7, density: 0.05}}
positions:
  Y: {{role: Y}}
  X_pos: {{role: X}}
  Z_pos: {{role: Z}}
claims:
  - id: P1
    statement: Patching the head back restores trigram completion.
    kind: activation_patching
    corruption: {{scheme: resample_tokens, positions: {corrupt}, seed: 5}}
    patch: ["0.0"]
    patch_at: Y
    positions: Y
    metric: correct_prob
    threshold: {{at_least: 0.5}}
    allow_vacuous: true
    vacuous_reason: patching the only head at Y restores everything; the test needs an estimate that then goes undefined
"""


def test_an_estimate_that_became_undefined_fails_as_a_regression_not_an_internal_error(tmp_path, capsys):
    """Corrupting the tokens after the scored position changes nothing (the model is causal), so the recovered
    fraction is 0/0: the estimate the baseline stored as a number is now undefined (null in the JSON)."""
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text(PATCHING.format(corrupt="X_pos"))
    bad.write_text(PATCHING.format(corrupt="Z_pos"))
    baseline = tmp_path / "baseline.json"
    assert main(["baseline", str(good), "--out", str(baseline), "--report-dir", str(tmp_path / "good"), "--quiet"]) == 0
    stored = json.loads(baseline.read_text())["files"]["patching"]["claims"]["P1"]["estimate"]
    assert isinstance(stored, float)
    capsys.readouterr()

    code = main(["run", str(bad), "--baseline", str(baseline), "--report-dir", str(tmp_path / "bad"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 1 and "internal error" not in err, err
    claim = json.loads((tmp_path / "bad" / "patching.json").read_text())["claims"][0]
    assert claim["estimate"] is None and claim["verdict"] == "fail" and claim["as_expected"] is False
    assert claim["sentence"].endswith(
        f" REGRESSION: the baseline estimate was {stored:.4g}; the estimate is now undefined, "
        "so the claim can no longer be shown to hold."
    )
    assert claim["baseline"] == {"estimate": stored, "worsened_by": None, "allowed": 0.0}


def test_a_malformed_stored_estimate_is_an_input_error(tmp_path, capsys):
    baseline = tmp_path / "b.json"
    files = {"trigram": {"claims": {"T1": {"estimate": "high"}}}}
    baseline.write_text(json.dumps({"schema_version": 1, "files": files}))
    assert main(["run", FILE, "--baseline", str(baseline), "--report-dir", str(tmp_path), "--quiet"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"{baseline}: files.trigram.claims.T1.estimate: expected a number or null, got 'high'; "
        "rewrite it with `circuitcheck baseline`"
    )
