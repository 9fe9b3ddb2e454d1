"""benchmarks/peer.py's comparison on a tiny GPT-2-shaped model: the engine and TransformerLens's own
patching agree cell by cell, the patches move the metric, and the result carries the reported keys."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks import peer
from benchmarks.measure import AGREEMENT_ATOL

TINY = peer.Shape(n_layers=2, n_heads=2, d_model=32, vocab=97, n_prompts=3, seq=5)


def test_engine_and_transformer_lens_agree_on_both_sweeps(tmp_path: Path, capsys) -> None:
    result = peer.run(TINY, "cpu", cli=False, ioi=False, work=tmp_path)
    assert {"tl_over_engine", "engine_over_floor", "max_abs_diff", "peak_rss_mb"} <= set(result)
    assert result["agree"] and result["max_abs_diff"] <= AGREEMENT_ATOL
    rows = {r["sweep"]: r for r in result["rows"]}
    assert rows["heads"]["cells"] == 2 * 2 * 5 and rows["resid"]["cells"] == 2 * 5
    # patches that change nothing would make agreement meaningless
    assert all(r["max_effect"] > 1e-3 for r in rows.values())
    json.dumps(result)  # the last line printed is this, as JSON
    assert "heads" in capsys.readouterr().out
