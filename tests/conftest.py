"""Shared fixtures: the committed zoo checkpoint, a tiny random 2-layer model, file helpers."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from circuitcheck import testing
from circuitcheck.testing import TINY_CONFIG
from circuitcheck.zoo.load import LoadedModel, load

REPO = Path(__file__).resolve().parents[1]
HYPOTHESES = REPO / "hypotheses"

__all__ = ["HYPOTHESES", "REPO", "TINY_CONFIG", "VALID_FILE"]


@pytest.fixture(scope="session", autouse=True)
def _threads() -> None:
    torch.set_num_threads(2)


@pytest.fixture(scope="session")
def trigram() -> LoadedModel:
    return load("trigram")


@pytest.fixture(scope="session")
def tiny_model() -> object:
    return testing.tiny_model()


@pytest.fixture
def write_yaml(tmp_path: Path) -> Callable[[str, str], Path]:
    def write(text: str, name: str = "h.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text).lstrip("\n"))
        return path

    return write


VALID_FILE = """
version: 1
model: trigram
dataset:
  kind: trigram
  n_seqs: 50
  seed: 1
  density: 0.05
positions:
  Y: {role: Y}
claims:
  - id: T8
    statement: The head is necessary.
    kind: ablation
    mode: necessity
    components: ["0.0"]
    method: zero
    positions: Y
    metric: accuracy
    effect: relative_drop
    threshold: {at_least: 0.5}
"""
