"""``circuitcheck sweep``: the engine's cells against a naive TransformerLens loop, the planted induction
head found, the draft file valid and runnable on fresh data, and bad ``--corruption`` values refused."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import torch

from circuitcheck.api import check, sweep
from circuitcheck.cli import main
from circuitcheck.data.batch import NO_TARGET
from circuitcheck.errors import CircuitcheckError, SpecError
from circuitcheck.plan.compile import compile_file
from circuitcheck.spec.hypothesis import load_hypothesis
from circuitcheck.sweep import SweepReport
from circuitcheck.sweep.corruption import resolve_corruption

HYPOTHESIS = """\
version: 1
name: ind-sweep
model: induction
dataset: {kind: repeated, n_seqs: 24, seed: 11}
positions:
  first: {role: first}
  second: {role: second}
  at_12: {indices: [12]}
claims:
  - id: P1
    statement: Patching head 1.0 back at position 12 recovers the prediction there.
    kind: activation_patching
    corruption: {scheme: resample_tokens, positions: first, seed: 5}
    patch: ["1.0"]
    patch_at: at_12
    positions: at_12
    metric: logprob
    threshold: {at_least: 0.5}
  - id: A1
    statement: Zero-ablating head 1.0 destroys the prediction on the repeated copy.
    kind: ablation
    mode: necessity
    components: ["1.0"]
    method: zero
    positions: second
    metric: correct_prob
    effect: relative_drop
    threshold: {at_least: 0.9}
"""


@pytest.fixture(scope="module")
def hypothesis(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sweep") / "ind.yaml"
    path.write_text(HYPOTHESIS)
    return path


@pytest.fixture(scope="module")
def heads(hypothesis: Path) -> tuple[SweepReport, Path]:
    out = hypothesis.parent / "out"
    return sweep(hypothesis, "P1", "heads", out=out), out


def naive_patched(path: Path, corruption: str, hook: Any, positions: str | None = None) -> dict[tuple, float]:
    """M_patched per cell, one ``run_with_hooks`` per cell: the clean activation at ``hook(layer)`` (one
    head's slice of hook_z when ``head`` is not None) written into the corrupted run at one position."""
    plan = compile_file(path, skip_inapplicable=True)
    model, tokens = plan.loaded.model, plan.batch.tokens
    corrupted = resolve_corruption(plan, corruption, positions, None)
    mask = corrupted.mask
    targets = plan.batch.next_token
    assert (targets[mask] != NO_TARGET).all()
    _, cache = model.run_with_cache(tokens)
    heads = [None] if "resid" in hook(0) else list(range(model.cfg.n_heads))
    out = {}
    for layer in range(model.cfg.n_layers):
        name = hook(layer)
        clean = cache[name]
        for head in heads:
            for pos in range(tokens.shape[1]):
                def patch(act: torch.Tensor, hook: Any, head: int | None = head, pos: int = pos,
                          clean: torch.Tensor = clean) -> torch.Tensor:
                    act = act.clone()
                    if head is None:
                        act[:, pos] = clean[:, pos]
                    else:
                        act[:, pos, head] = clean[:, pos, head]
                    return act

                with torch.no_grad():
                    logits = model.run_with_hooks(corrupted.tokens, fwd_hooks=[(name, patch)])
                logprobs = logits.log_softmax(-1)
                picked = logprobs[mask].gather(-1, targets[mask][:, None]).squeeze(-1)
                out[(layer, head, pos)] = float(picked.double().mean())
    return out


def test_heads_sweep_matches_a_naive_loop(hypothesis: Path, heads: tuple[SweepReport, Path]) -> None:
    report, _ = heads
    naive = naive_patched(hypothesis, "P1", lambda layer: f"blocks.{layer}.attn.hook_z")
    cells = report.document["cells"]
    assert len(cells) == len(naive) == 2 * 2 * 17
    for cell in cells:
        assert cell["metric_patched"] == pytest.approx(naive[(cell["layer"], cell["head"], cell["position"])],
                                                        abs=1e-5)
    # the fraction recovered follows from the means, as the naive loop computes it
    clean, corrupted = report.document["metric_clean"], report.document["metric_corrupted"]
    for cell in cells:
        want = (naive[(cell["layer"], cell["head"], cell["position"])] - corrupted) / (clean - corrupted)
        assert cell["estimate"] == pytest.approx(want, abs=1e-5)


def test_heads_sweep_finds_the_planted_induction_head(heads: tuple[SweepReport, Path]) -> None:
    report, _ = heads
    top = report.document["top"][0]
    assert (top["component"], top["position"]) == ("1.0", 12)
    assert top["estimate"] == pytest.approx(1.0, abs=1e-4)
    decoy = [c for c in report.document["cells"] if c["component"] == "1.1"]
    assert max(abs(c["estimate"]) for c in decoy) < 1e-4
    # patching at positions after the scored one cannot reach it: exactly nothing recovered
    assert all(c["estimate"] == 0.0 for c in report.document["cells"] if c["position"] > 12)


def test_resid_sweep_matches_a_naive_loop(hypothesis: Path, tmp_path: Path) -> None:
    inline = "{scheme: resample_tokens, positions: first, seed: 5}"
    report = sweep(hypothesis, inline, "resid", positions="at_12", out=tmp_path)
    naive = naive_patched(hypothesis, inline, lambda layer: f"blocks.{layer}.hook_resid_pre", "at_12")
    for cell in report.document["cells"]:
        assert cell["metric_patched"] == pytest.approx(naive[(cell["layer"], None, cell["position"])], abs=1e-5)
    assert report.document["corruption_source"] == "inline"
    assert report.document["metric"] == "logprob"


def test_json_holds_every_cell_with_its_interval_and_provenance(heads: tuple[SweepReport, Path]) -> None:
    _, out = heads
    doc = json.loads((out / "ind-sweep-sweep-heads.json").read_text())
    assert {"cells", "top", "corruption", "metric", "positions", "statistics", "provenance", "draft",
            "metric_clean", "metric_corrupted"} <= set(doc)
    assert {"layer", "head", "position", "estimate", "lo", "hi"} <= set(doc["cells"][0])
    assert all(c["lo"] <= c["estimate"] <= c["hi"] for c in doc["cells"] if c["lo"] is not None)
    prov = doc["provenance"]
    assert len(prov["checkpoint_sha256"]) == 64 and prov["dataset"]["seed"] == 11
    assert doc["statistics"]["seed"] == 0
    html = (out / "ind-sweep-sweep-heads.html").read_text()
    assert "<script" not in html and "http" not in html.split("<h2>Provenance")[0]
    assert html.count("<svg") == 3  # the legend and one heatmap per layer
    assert "<title>1.0, position 12: 1 [95% CI 1, 1]</title>" in html


def test_draft_validates_uses_a_fresh_seed_and_runs(heads: tuple[SweepReport, Path], tmp_path: Path) -> None:
    _, out = heads
    draft = out / "ind-sweep-draft.yaml"
    text = draft.read_text()
    assert "DISCOVERY, NOT CONFIRMATION" in text
    spec, _ = load_hypothesis(draft)
    assert spec.dataset.seed == 11 + 1000
    assert [c.patch[0].__str__() for c in spec.claims][0] == "1.0"
    assert spec.claims[0].threshold.at_least == pytest.approx(0.8)
    assert main(["validate", str(draft)]) == 0
    report = check(draft, report_dir=tmp_path)
    assert report.claims[spec.claims[0].id].verdict == "pass"


@pytest.mark.parametrize(
    ("corruption", "message"),
    [
        ("nope", r"--corruption: 'nope' is no claim id of .*\n  fix: give a claim id with a corruption \(P1\)"),
        ("{scheme: resample_tokens, positions: nowhere, seed: 5}",
         r"--corruption: unknown position selection 'nowhere'\n  fix: define it under 'positions:'"),
        ("{scheme: resample_tokens, seed: 5}", r"--corruption: positions: Field required"),
        ("{scheme: resample_tokens, positions: first, seed: 5, extra: 1}", r"--corruption: extra: Extra inputs"),
        ("[1, 2", r"not a YAML mapping"),
    ],
)
def test_bad_corruption_is_one_line_and_a_fix(hypothesis: Path, corruption: str, message: str) -> None:
    plan = compile_file(hypothesis, skip_inapplicable=True)
    with pytest.raises(CircuitcheckError, match=message):
        resolve_corruption(plan, corruption, None, None)


def test_a_claim_without_a_corruption_is_pinned_to_the_file(hypothesis: Path) -> None:
    plan = compile_file(hypothesis, skip_inapplicable=True)
    with pytest.raises(SpecError, match=r"ind\.yaml:\d+:\d+: claims\.1: claim 'A1' \(kind ablation\) has no corr"):
        resolve_corruption(plan, "A1", None, None)


def test_cli_errors_exit_2_without_writing(hypothesis: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "nothing"
    assert main(["sweep", str(hypothesis), "--corruption", "P1", "--metric", "nope", "--out", str(out)]) == 2
    assert "--metric: unknown metric 'nope'\n  fix: use one of:" in capsys.readouterr().err
    assert main(["sweep", str(hypothesis), "--corruption", "P1", "--over", "mlp", "--out", str(out)]) == 2
    assert "the model is attention-only" in capsys.readouterr().err
    assert not list(out.glob("*"))


def test_draft_re_roots_a_relative_model_path_at_its_own_folder(tmp_path: Path) -> None:
    from circuitcheck.zoo.load import zoo_root

    here = tmp_path / "files"
    here.mkdir()
    written = os.path.relpath(zoo_root() / "induction", here)
    path = here / "rel.yaml"
    path.write_text(HYPOTHESIS.replace("model: induction", f"model: {written}").replace("n_seqs: 24", "n_seqs: 8"))
    out = tmp_path / "elsewhere" / "deeper"
    report = sweep(path, "P1", "heads", out=out)
    assert report.draft is not None
    draft = compile_file(out / "ind-sweep-draft.yaml")
    assert draft.loaded.checkpoint_sha256 == report.document["provenance"]["checkpoint_sha256"]
    assert draft.batch.params["seed"] == 11 + 1000


def test_a_prompts_sweep_cell_is_the_patching_claim_on_the_same_data(tmp_path: Path) -> None:
    # logit_diff on a prompts dataset is answer minus counterfactual: the sweep must read the counterfactual as the
    # claim does (it once scored answer minus the largest other logit, 0.26 where the claim measured 0.48)
    import yaml

    repo = Path(__file__).resolve().parents[1]
    spec = yaml.safe_load((repo / "hypotheses" / "ioi-mini.yaml").read_text())
    spec["model"] = str(repo / "models" / "ioi-mini")
    spec["dataset"]["n_seqs"] = 40
    spec["claims"] = [c for c in spec["claims"] if c["id"] == "P1-patch-name-mover"]
    spec.pop("circuits", None)
    path = tmp_path / "ioi.yaml"
    path.write_text(yaml.safe_dump(spec))
    claim = check(path).claims["P1-patch-name-mover"]
    found = sweep(path, "P1-patch-name-mover", "heads")
    cell = next(c for c in found.document["cells"] if (c["component"], c["position"]) == ("1.2", 13))
    assert cell["estimate"] == pytest.approx(claim.estimate, abs=1e-6)
