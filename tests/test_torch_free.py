"""`circuitcheck validate` and `circuitcheck schema` need no model, so they import neither torch nor TransformerLens.

Each check runs in a fresh interpreter: this test session has imported torch long ago.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "transformer_lens")


def _loaded_after(code: str) -> dict[str, object]:
    """Run ``code`` (which sets ``result``) in a new interpreter; report ``result`` and which of HEAVY it loaded."""
    script = (
        f"import json, sys\n{code}\n"
        f"print(json.dumps({{'result': result, 'loaded': [m for m in {HEAVY!r} if m in sys.modules]}}))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120, check=True
    )
    return json.loads(done.stdout.splitlines()[-1])


@pytest.mark.parametrize("path", sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "hypotheses").glob("*.yaml")))
def test_validate_imports_no_torch(path):
    out = _loaded_after(f"from circuitcheck.cli import main\nresult = main(['validate', {path!r}])")
    assert out == {"result": 0, "loaded": []}


def test_schema_imports_no_torch():
    out = _loaded_after(
        "import contextlib, io\nfrom circuitcheck.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n    result = main(['schema'])"
    )
    assert out == {"result": 0, "loaded": []}


def test_every_kind_registers_without_torch():
    out = _loaded_after(
        "from circuitcheck.plugins import load_extensions\nload_extensions()\n"
        "from circuitcheck.spec.kinds import claim_kinds, dataset_kinds\nfrom circuitcheck.metrics import metrics\n"
        "result = [len(claim_kinds.names()), len(dataset_kinds.names()), len(metrics.names())]"
    )
    n_claims, n_datasets, n_metrics = out["result"]  # type: ignore[misc]
    assert n_claims >= 17 and n_datasets >= 5 and n_metrics >= 7
    assert out["loaded"] == []
