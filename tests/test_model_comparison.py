"""model_comparison: a paired difference between two models on the same data."""

from __future__ import annotations

import json

import pytest
import torch

from circuitcheck.cli import main
from circuitcheck.plan.compile import compile_file
from circuitcheck.run.execute import run_file
from circuitcheck.zoo.load import load
from tests.conftest import HYPOTHESES

FILE = HYPOTHESES / "unreproduced" / "trigram-mlp-not-needed.yaml"


def test_difference_matches_two_separate_evaluations():
    plan = compile_file(FILE)
    m = run_file(plan).claims[0].measurement
    batch, mask = plan.batch, plan.masks["Y"]
    accs = []
    for name in ("trigram", "trigram-attn-only"):
        with torch.no_grad():
            logits = load(name).model(batch.tokens)
        accs.append((logits[mask].argmax(-1) == batch.next_token[mask]).float().mean().item())
    assert m.estimate == pytest.approx(accs[0] - accs[1], abs=1e-6)  # float32 means in the reference
    assert m.details["metric_other"] == pytest.approx(accs[1])


def test_comparing_a_model_with_itself_gives_zero_with_zero_width(tmp_path, capsys):
    path = tmp_path / "self.yaml"
    path.write_text(FILE.read_text().replace("other_model: trigram-attn-only", "other_model: trigram"))
    main(["run", str(path), "--report-dir", str(tmp_path), "--quiet"])
    claim = json.loads((tmp_path / "trigram-mlp-not-needed.json").read_text())["claims"][0]
    assert claim["estimate"] == 0.0 and claim["ci_low"] == 0.0 and claim["ci_high"] == 0.0
    capsys.readouterr()


def test_unknown_other_model_is_pinned(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text(FILE.read_text().replace("other_model: trigram-attn-only", "other_model: nope"))
    assert main(["run", str(path), "--report-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}:" in err and "other_model: no model 'nope'" in err
