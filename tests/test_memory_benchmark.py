"""benchmarks/memory.py runs end to end: its smallest configuration, in a subprocess, ends with a JSON line."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import REPO


def test_tiny_memory_benchmark_ends_with_peak_rss_per_workload(tmp_path):
    out = tmp_path / "memory.json"
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "memory.py"), "--tiny", "--threads", "1", "--json-out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=300, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    workloads = set(result["ok"])
    assert {"trigram-100"} < workloads and any("sweep" in w for w in workloads) and any("@" in w for w in workloads)
    assert all(result["ok"].values())
    assert set(result["peak_rss_mb"]) == workloads
    # A real process's peak: more than the Python interpreter alone, less than the 12 GiB cap.
    assert all(100 < mb < 12 * 2**30 / 1e6 for mb in result["peak_rss_mb"].values())
    assert isinstance(result["sweep_identical_with_tiny_max_batch"], bool)
    assert set(result["targets_met"]) == {
        "trigram-80000 peak RSS <= 3 GB",
        "gpt2-sweep peak RSS <= 4 GB (CPU)",
        "gpt2-sweep identical at a tiny --max-batch",
    }
    assert all(met is None for met in result["targets_met"].values())  # the tiny sizes are not the issue's
    saved = json.loads(out.read_text())
    assert saved["summary"] == result
    assert all("claims" not in row and row["n_claims_reported"] > 0 for row in saved["workloads"])
