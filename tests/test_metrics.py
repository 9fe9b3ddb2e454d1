"""Each metric against an independent, loop-based reference computation."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from circuitcheck.metrics import metric, metrics
from circuitcheck.registry import DuplicateRegistrationError


def reference(name: str, logits: list[list[float]], targets: list[int], clean: list[list[float]]) -> list[float]:
    out = []
    for row, t, crow in zip(logits, targets, clean, strict=True):
        z = sum(math.exp(x) for x in row)
        probs = [math.exp(x) / z for x in row]
        cz = sum(math.exp(x) for x in crow)
        cprobs = [math.exp(x) / cz for x in crow]
        if name == "accuracy":
            out.append(1.0 if max(range(len(row)), key=lambda i: row[i]) == t else 0.0)
        elif name == "correct_prob":
            out.append(probs[t])
        elif name == "logprob":
            out.append(math.log(probs[t]))
        elif name == "loss":
            out.append(-math.log(probs[t]))
        elif name == "logit_diff":
            out.append(row[t] - max(x for i, x in enumerate(row) if i != t))
        elif name == "kl":
            out.append(sum(c * (math.log(c) - math.log(p)) for c, p in zip(cprobs, probs, strict=True)))
    return out


rows = st.lists(st.floats(-8, 8, allow_nan=False, width=32), min_size=5, max_size=5)


@pytest.mark.parametrize("name", ["accuracy", "correct_prob", "logprob", "loss", "logit_diff", "kl"])
@settings(max_examples=40, deadline=None)
@given(data=st.lists(st.tuples(rows, rows, st.integers(0, 4)), min_size=1, max_size=6))
def test_metric_matches_reference(name, data):
    logits = [r for r, _, _ in data]
    clean = [c for _, c, _ in data]
    targets = [t for _, _, t in data]
    if name == "accuracy" and any(sorted(r)[-1] == sorted(r)[-2] for r in logits):
        return  # ties: argmax order is an implementation detail
    got = metrics.get(name)(torch.tensor(logits), torch.tensor(targets), torch.tensor(clean))
    want = reference(name, logits, targets, clean)
    assert got.tolist() == pytest.approx(want, rel=1e-4, abs=1e-4)


def test_kl_of_a_run_with_itself_is_zero():
    logits = torch.randn(7, 9)
    assert metrics.get("kl")(logits, torch.zeros(7, dtype=torch.long), logits).abs().max() < 1e-6


def test_directions():
    assert metrics.get("accuracy").higher_is_better and not metrics.get("loss").higher_is_better
    assert not metrics.get("kl").higher_is_better


def test_registry_refuses_duplicates():
    with pytest.raises(DuplicateRegistrationError, match="metric 'accuracy' is already registered"):
        metric("accuracy", higher_is_better=True)(lambda a, b, c: a)
