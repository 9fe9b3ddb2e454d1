"""``pytest hypotheses/``: every claim is a test item; a failure explains itself."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import HYPOTHESES, REPO, VALID_FILE


def test_claims_are_collected_and_failures_explain_themselves(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", str(HYPOTHESES / "examples" / "false-claim.yaml"), "-p", "no:cacheprovider",
         "--circuitcheck-report-dir", str(tmp_path), "-q", "--rootdir", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    out = proc.stdout
    assert proc.returncode == 1, out + proc.stderr
    assert "1 failed" in out
    assert "FAIL: The MLP completes trigrams on its own" in out
    assert "threshold >= 0.9" in out
    assert f"report: {tmp_path / 'false-claim.md'}" in out
    assert (tmp_path / "false-claim.json").exists()


def test_collection_lists_one_item_per_claim():
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", str(HYPOTHESES / "trigram.yaml"), "--collect-only", "-p", "no:cacheprovider"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert "trigram.yaml::T1" in proc.stdout and "trigram.yaml::T8" in proc.stdout
    assert "7 tests collected" in proc.stdout


def _comparable(doc: dict) -> dict:
    """A report document without what differs between any two runs: its time, timing, run id and command."""
    doc = dict(doc)
    for key in ("run_id", "timing"):
        doc.pop(key)
    doc["provenance"] = {k: v for k, v in doc["provenance"].items() if k not in ("time", "command")}
    return doc


def test_pytest_and_the_cli_write_the_same_report(tmp_path):
    from circuitcheck.cli import main

    path = str(HYPOTHESES / "trigram.yaml")
    assert main(["run", path, "--report-dir", str(tmp_path / "cli"), "--quiet"]) == 0
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", path, "-p", "no:cacheprovider",
         "--circuitcheck-report-dir", str(tmp_path / "pytest"), "-q", "--rootdir", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    cli, plugin = (json.loads((tmp_path / d / "trigram.json").read_text()) for d in ("cli", "pytest"))
    assert plugin["provenance"]["command"] == f"pytest {path}"
    assert _comparable(plugin) == _comparable(cli)
    html = (tmp_path / "pytest" / "trigram.html").read_text()
    assert 'aria-label="head 0.0: mean over 1000 sequences"' in html  # the plugin's HTML has the heatmaps too


SPY = """
import sys, pytest, circuitcheck.api as api
seen = []
real = api.check
def spy(*args, **kwargs):
    seen.append(kwargs)
    return real(*args, **kwargs)
api.check = spy
code = pytest.main(sys.argv[1:])
print("SEEN", [(k["max_rows"], k["resume"]) for k in seen])
sys.exit(code)
"""


def test_the_plugin_passes_max_batch_and_no_resume_to_check(write_yaml, tmp_path):
    path = write_yaml(VALID_FILE)
    args = [str(path), "-p", "no:cacheprovider", "--circuitcheck-report-dir", str(tmp_path / "r"), "-q",
            "--rootdir", str(tmp_path)]
    runs = [
        subprocess.run([sys.executable, "-c", SPY, *args, *extra], cwd=REPO, capture_output=True, text=True,
                       timeout=300)
        for extra in (["--circuitcheck-max-batch", "3", "--circuitcheck-no-resume"], [])
    ]
    assert [p.returncode for p in runs] == [0, 0], runs[0].stdout + runs[0].stderr
    assert "SEEN [(3, False)]" in runs[0].stdout and "SEEN [(None, True)]" in runs[1].stdout


def test_a_bad_max_batch_is_a_usage_error():
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", str(HYPOTHESES / "trigram.yaml"), "-p", "no:cacheprovider", "--collect-only",
         "--circuitcheck-max-batch", "0"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 4 and "expected a whole number >= 1, got 0" in proc.stderr
