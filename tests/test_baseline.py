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
    assert code == 1 and "X-patching" not in regressed and regressed
    assert all(doc["claims"][i]["verdict"] == "fail" for i, c in enumerate(doc["claims"]) if c["id"] in regressed)
    capsys.readouterr()


def test_baseline_for_another_file_is_an_input_error(tmp_path, capsys):
    baseline = tmp_path / "b.json"
    baseline.write_text(json.dumps({"schema_version": 1, "files": {}}))
    assert main(["run", FILE, "--baseline", str(baseline), "--report-dir", str(tmp_path), "--quiet"]) == 2
    assert "no baseline for 'trigram'" in capsys.readouterr().err
