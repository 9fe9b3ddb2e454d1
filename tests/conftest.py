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

__all__ = ["HYPOTHESES", "REPO", "TINY_CONFIG", "VALID_FILE", "two_claim_file"]


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


TWO_CLAIMS = """
version: 1
name: NAME
model: trigram
dataset: {kind: trigram, n_seqs: 60, seed: 11, density: 0.05}
positions:
  Y: {role: Y}
  X_pos: {role: X}
claims:
  - id: head-needed
    statement: Zero-ablating the head destroys trigram completion.
    kind: ablation
    mode: necessity
    components: ["0.0"]
    method: zero
    positions: Y
    metric: accuracy
    effect: relative_drop
    threshold: {at_least: 0.5}
  - id: looks-back
    statement: At Y the head attends to the trigram's first token.
    kind: attention_mass
    head: "0.0"
    queries: Y
    keys: X_pos
    threshold: {at_least: 0.1}
"""


def two_claim_file(name: str) -> str:
    """A small trigram file (a necessity and an attention claim) named ``name``: a job for executors and caches."""
    return TWO_CLAIMS.replace("name: NAME", f"name: {name}")
