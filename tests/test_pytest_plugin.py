"""``pytest hypotheses/``: every claim is a test item; a failure explains itself."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import HYPOTHESES, REPO


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
