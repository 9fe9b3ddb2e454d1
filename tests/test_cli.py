"""The command line as a user meets it: exit codes, messages, reports, no tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from circuitcheck.cli import main
from tests.conftest import HYPOTHESES, REPO, VALID_FILE


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "circuitcheck.cli", *args], cwd=REPO, capture_output=True, text=True, timeout=300
    )


def test_trigram_suite_passes_and_writes_reports(tmp_path, capsys):
    code = main(["run", str(HYPOTHESES / "trigram.yaml"), "--report-dir", str(tmp_path), "--quiet"])
    assert code == 0, capsys.readouterr().err
    doc = json.loads((tmp_path / "trigram.json").read_text())
    assert doc["summary"] == {
        "total": 7,
        "passed": 7,
        "failed": 0,
        "inconclusive": 0,
        "refuted_as_expected": 0,
        "known_failures": 0,
        "exit_code": 0,
    }
    t1 = next(c for c in doc["claims"] if c["id"] == "T1")
    assert set(t1["details"]) >= {"precision", "recall", "jaccard"}
    assert t1["estimate"] == t1["details"]["jaccard"]
    assert {c["name"] for c in doc["self_checks"]} == {
        "hooks_fired",
        "identity_patch",
        "batched_noop",
        "finite",
        "full_circuit",
        "empty_circuit",
    }
    assert all(c["passed"] for c in doc["self_checks"])
    prov = doc["provenance"]
    assert prov["seeds"]["bootstrap"] == 0 and prov["seeds"]["claims"]["T8-resample"] == {"resample_seed": 11}
    assert len(prov["checkpoint_sha256"]) == 64 and len(prov["hypothesis_sha256"]) == 64
    assert prov["dataset"]["seed"] == 2024 and prov["command"].startswith("circuitcheck")
    assert "T1" in (tmp_path / "trigram.md").read_text()


def test_false_claim_fails_with_a_reason(tmp_path, capsys):
    code = main(["run", str(HYPOTHESES / "examples" / "false-claim.yaml"), "--report-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 1
    assert "mlp-alone fail: keeping only embed, pos_embed, mlp0 gave accuracy" in out
    doc = json.loads((tmp_path / "false-claim.json").read_text())
    assert doc["claims"][0]["verdict"] == "fail"
    assert "misses the threshold >= 0.9" in doc["claims"][0]["sentence"]


def test_unknown_key_exits_2_with_location_and_no_traceback(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(VALID_FILE.lstrip("\n").replace("  density: 0.05\n", "  density: 0.05\n  densty: 0.1\n"))
    proc = cli("run", str(path), "--report-dir", str(tmp_path))
    assert proc.returncode == 2
    assert f"{path}:8:3: dataset.densty: unknown key 'densty'" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout


def test_python_tag_exits_2_without_executing(tmp_path):
    marker = tmp_path / "executed"
    path = tmp_path / "evil.yaml"
    path.write_text(f"version: !!python/object/apply:os.system ['touch {marker}']\n")
    proc = cli("validate", str(path))
    assert proc.returncode == 2
    assert f"{path}:1:10:" in proc.stderr and "not allowed" in proc.stderr
    assert not marker.exists()
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    ("old", "new", "line", "message"),
    [
        ('components: ["0.0"]', 'components: ["0.3"]', 15, "head 3 is out of range: layer 0 has 1 head(s)"),
        (
            'components: ["0.0"]',
            'components: ["blocks.0.attn.hook_patern"]',
            15,
            "unknown hook 'blocks.0.attn.hook_patern'",
        ),
        ('components: ["0.0"]', 'components: ["2.0"]', 15, "layer 2 is out of range"),
    ],
)
def test_plan_errors_are_pinned_before_any_forward_pass(tmp_path, capsys, old, new, line, message):
    path = tmp_path / "h.yaml"
    path.write_text(VALID_FILE.lstrip("\n").replace(old, new))
    assert main(["explain", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}:{line}:" in err and message in err
    if "patern" in new:
        assert "did you mean 'blocks.0.attn.hook_pattern'?" in err


def test_missing_model_is_invalid_input(tmp_path, capsys):
    path = tmp_path / "h.yaml"
    path.write_text(VALID_FILE.lstrip("\n").replace("model: trigram", "model: no-such-model"))
    assert main(["run", str(path), "--report-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}:2:8: model: no model 'no-such-model'" in err and "trigram" in err


def test_validate_does_not_load_a_model(tmp_path, capsys):
    path = tmp_path / "h.yaml"
    path.write_text(VALID_FILE.lstrip("\n").replace("model: trigram", "model: not-built-yet"))
    assert main(["validate", str(path)]) == 0
    assert "ok (1 claims" in capsys.readouterr().out


def test_explain_shows_hooks_and_positions(capsys):
    assert main(["explain", str(HYPOTHESES / "trigram.yaml")]) == 0
    out = capsys.readouterr().out
    assert "mean -> blocks.0.attn.hook_z[head 0] at positions 'all'" in out
    assert "Y (" in out and "[T1] association" in out


def test_one_bad_file_does_not_lose_the_others(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("")
    code = main(["run", str(bad), str(HYPOTHESES / "trigram.yaml"), "--report-dir", str(tmp_path), "--quiet"])
    assert code == 2
    assert (tmp_path / "trigram.json").exists()
    assert "the file is empty" in capsys.readouterr().err


def test_reports_are_deterministic_apart_from_time(tmp_path):
    docs = []
    for sub in ("a", "b"):
        main(["run", str(HYPOTHESES / "trigram.yaml"), "--report-dir", str(tmp_path / sub), "--quiet"])
        doc = json.loads((tmp_path / sub / "trigram.json").read_text())
        doc["provenance"].pop("time")
        doc.pop("timing")
        doc.pop("run_id")  # new on every write, like the time
        for claim in doc["claims"]:
            claim["details"].pop("seconds", None)
        docs.append(doc)
    assert docs[0] == docs[1]


def test_no_resume_gives_the_same_verdicts_and_estimates(tmp_path):
    found = {}
    for sub, flags in (("resumed", []), ("from_tokens", ["--no-resume"])):
        assert (
            main(["run", str(HYPOTHESES / "trigram.yaml"), "--report-dir", str(tmp_path / sub), "--quiet", *flags]) == 0
        )
        doc = json.loads((tmp_path / sub / "trigram.json").read_text())
        found[sub] = doc["claims"]
    for resumed, from_tokens in zip(found["resumed"], found["from_tokens"], strict=True):
        assert (resumed["id"], resumed["verdict"]) == (from_tokens["id"], from_tokens["verdict"])
        for key in ("estimate", "ci_low", "ci_high"):
            assert resumed[key] == pytest.approx(from_tokens[key], abs=1e-6), (resumed["id"], key)


def test_report_dir_default_is_reports(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["run", str(HYPOTHESES / "trigram.yaml"), "--quiet"]) == 0
    assert (Path("reports") / "trigram.json").exists()


def test_junit_report_has_a_case_per_claim(tmp_path, capsys):
    import xml.etree.ElementTree as ET

    junit = tmp_path / "junit.xml"
    main(
        [
            "run",
            str(HYPOTHESES / "examples" / "false-claim.yaml"),
            "--report-dir",
            str(tmp_path),
            "--junit",
            str(junit),
            "--quiet",
        ]
    )
    root = ET.parse(junit).getroot()
    suite = root.find("testsuite")
    assert suite is not None and suite.get("name") == "false-claim" and suite.get("failures") == "1"
    case = suite.find("testcase")
    assert case is not None and case.get("name") == "mlp-alone"
    failure = case.find("failure")
    assert failure is not None and "The MLP completes trigrams" in (failure.text or "")
    capsys.readouterr()


def test_disabled_hook_is_a_plan_error(tmp_path, capsys):
    path = tmp_path / "h.yaml"
    path.write_text(VALID_FILE.lstrip("\n").replace('components: ["0.0"]', 'components: ["blocks.0.hook_mlp_in"]'))
    assert main(["explain", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}:15:" in err and "exists but is disabled in this model" in err


def test_a_claim_on_its_threshold_is_inconclusive_and_exits_3(tmp_path, capsys):
    path = tmp_path / "h.yaml"
    path.write_text(VALID_FILE.lstrip("\n").replace("method: zero", "method: resample\n    resample_seed: 3"))
    main(["run", str(path), "--report-dir", str(tmp_path), "--quiet"])
    estimate = json.loads((tmp_path / "h.json").read_text())["claims"][0]["estimate"]
    path.write_text(path.read_text().replace("{at_least: 0.5}", f"{{at_least: {estimate!r}}}"))
    assert main(["run", str(path), "--report-dir", str(tmp_path), "--quiet"]) == 3
    doc = json.loads((tmp_path / "h.json").read_text())
    assert doc["claims"][0]["verdict"] == "inconclusive" and doc["summary"]["exit_code"] == 3
    assert "sits on the threshold" in doc["claims"][0]["sentence"]
    capsys.readouterr()


EXPECTATIONS = [
    (
        "refuted",
        "{at_most: -5.0}",
        0,
        "REFUTED (expected)",
        "expects this claim to be refuted (the reason)",
        "refuted_as_expected",
    ),
    ("refuted", "{at_least: 0.1}", 1, "HOLDS (expected refuted)", "it unexpectedly holds", "refuted_as_expected"),
    (
        "known_failure",
        "{at_most: -5.0}",
        0,
        "FAIL (known)",
        "Known not to reproduce on this model (the reason)",
        "known_failures",
    ),
    (
        "known_failure",
        "{at_least: 0.1}",
        1,
        "HOLDS (known failure)",
        "it now holds, so the file fails",
        "known_failures",
    ),
]


@pytest.mark.parametrize(("expect", "threshold", "code", "shown", "said", "counter"), EXPECTATIONS)
def test_expected_failures_pass_only_while_they_fail(tmp_path, capsys, expect, threshold, code, shown, said, counter):
    path = tmp_path / "h.yaml"
    text = VALID_FILE.lstrip("\n").replace("{at_least: 0.5}", threshold)
    path.write_text(text + f"    expect: {expect}\n    expect_reason: the reason\n")
    assert main(["run", str(path), "--report-dir", str(tmp_path)]) == code
    assert shown in capsys.readouterr().out
    doc = json.loads((tmp_path / "h.json").read_text())
    claim = doc["claims"][0]
    assert claim["expect"] == expect and claim["as_expected"] is (code == 0)
    assert said in claim["sentence"]
    assert doc["summary"][counter] == (1 if code == 0 else 0)


def test_refutation_needs_a_reason(tmp_path, capsys):
    path = tmp_path / "h.yaml"
    path.write_text(VALID_FILE.lstrip("\n") + "    expect: refuted\n")
    assert main(["validate", str(path)]) == 2
    assert "needs an 'expect_reason'" in capsys.readouterr().err
