"""Calibrated composition scores (issue 15): planted compositions score 1.0 relative to the best the spectra
allow, random orientations score far below and near z = 0, and the raw score still matches TransformerLens."""

from __future__ import annotations

import math

import pytest
import torch

from circuitcheck.claims.composition import (
    CompositionClaim,
    best_score,
    calibrated,
    composition_score,
    rotation_null,
)
from circuitcheck.errors import SpecErrors
from circuitcheck.spec.hypothesis import load_hypothesis
from circuitcheck.testing import make_plan
from circuitcheck.zoo.load import load


def orthonormal(d: int, r: int, gen: torch.Generator) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(d, r, generator=gen, dtype=torch.float64))
    return q


def planted(d: int, r: int, seed: int, flat_reader: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """A writer that writes exactly the r-dimensional subspace its reader reads (flat writer spectrum)."""
    gen = torch.Generator().manual_seed(seed)
    subspace = orthonormal(d, r, gen)
    writer = orthonormal(d, r, gen) @ subspace.T  # x @ writer lies in the subspace
    inner = orthonormal(d, r, gen) if flat_reader else torch.randn(d, r, generator=gen, dtype=torch.float64)
    reader = subspace @ inner.T  # reads only the subspace
    return writer, reader


@pytest.mark.parametrize(("d", "r"), [(48, 24), (64, 4), (129, 32), (16, 1)])
def test_a_perfect_rank_r_composition_scores_one_over_root_r_raw_and_one_relative(d, r):
    writer, reader = planted(d, r, seed=r)
    assert composition_score(writer, reader) == pytest.approx(1 / math.sqrt(r), rel=1e-9)
    assert best_score(writer, reader) == pytest.approx(1 / math.sqrt(r), rel=1e-9)
    found = calibrated(writer, reader, draws=500, seed=0)
    assert found["relative_to_max"] == pytest.approx(1.0, abs=1e-9)
    if r < d // 2:  # (at r = d/2 and above a random orientation composes nearly as well)
        assert found["z"] > 5 and found["p_value"] == pytest.approx(1 / 501)


def test_a_perfect_composition_with_an_uneven_reader_still_scores_one_relative():
    writer, reader = planted(64, 8, seed=1, flat_reader=False)
    assert composition_score(writer, reader) < 1 / math.sqrt(8) + 1e-12  # the raw score does not reach 1/sqrt(r)
    assert calibrated(writer, reader, 200, 0)["relative_to_max"] == pytest.approx(1.0, abs=1e-9)


def test_a_reader_of_the_other_subspace_scores_zero():
    gen = torch.Generator().manual_seed(5)
    basis = orthonormal(32, 16, gen)
    writer = orthonormal(32, 8, gen) @ basis[:, :8].T
    reader = basis[:, 8:] @ orthonormal(32, 8, gen).T
    found = calibrated(writer, reader, 500, 0)
    assert found["raw"] == pytest.approx(0.0, abs=1e-12) and found["relative_to_max"] == pytest.approx(0.0, abs=1e-12)
    assert found["z"] < -3 and found["p_value"] == 1.0


@pytest.mark.parametrize("seed", range(5))
def test_random_matrices_score_far_below_a_planted_composition(seed):
    gen = torch.Generator().manual_seed(seed)
    d, r = 64, 4
    writer, reader = (
        torch.randn(d, r, generator=gen, dtype=torch.float64) @ torch.randn(r, d, generator=gen, dtype=torch.float64)
        for _ in range(2)
    )
    found = calibrated(writer, reader, 1000, seed)
    assert found["relative_to_max"] < 0.6  # chance is about sqrt(r / d) = 0.25; a planted pair scores 1.0
    assert abs(found["z"]) < 4
    assert found["raw"] <= found["best_possible"] + 1e-12  # von Neumann's trace inequality


def test_the_best_score_is_reached_by_aligning_the_spectra():
    gen = torch.Generator().manual_seed(9)
    d = 20
    ua, va, ub, vb = (orthonormal(d, d, gen) for _ in range(4))
    sa = torch.rand(d, generator=gen, dtype=torch.float64)
    sb = torch.rand(d, generator=gen, dtype=torch.float64)
    sa, sb = sa.sort(descending=True).values, sb.sort(descending=True).values
    writer = ua @ torch.diag(sa) @ va.T
    aligned = va @ torch.diag(sb) @ vb.T  # the reader's input directions are the writer's output ones, in order
    assert composition_score(writer, aligned) == pytest.approx(best_score(writer, aligned), rel=1e-9)
    misaligned = va.flip(1) @ torch.diag(sb) @ vb.T
    assert composition_score(writer, misaligned) < best_score(writer, misaligned) - 1e-3


def test_the_null_matches_explicit_haar_rotations():
    """The null's shortcut (a Q factor of d x rank_b Gaussians) against dense Haar rotations (sign-fixed QR)."""
    writer, reader = planted(24, 6, seed=3, flat_reader=False)
    null = rotation_null(writer, reader, 4000, seed=1)
    gen = torch.Generator().manual_seed(2)
    explicit = []
    for _ in range(4000):
        q, r = torch.linalg.qr(torch.randn(24, 24, generator=gen, dtype=torch.float64))
        explicit.append(composition_score(writer @ (q * torch.sign(torch.diagonal(r))), reader))
    reference = torch.tensor(explicit)
    assert float(null.mean()) == pytest.approx(float(reference.mean()), abs=0.01)
    assert float(null.std()) == pytest.approx(float(reference.std()), rel=0.1)
    assert float((null.square()).mean()) == pytest.approx(1 / 24, rel=0.05)  # E ||A Q B||^2 = ||A||^2 ||B||^2 / d


def claim(writer: str, reader: str, mode: str, scale: str) -> CompositionClaim:
    return CompositionClaim.model_validate(dict(
        id="f1", statement="s", kind="composition", writer=writer, reader=reader, mode=mode, scale=scale,
        threshold={"at_least": 0.0},
    ))


def measure(model, spec):
    plan = make_plan(model, [spec]).claims[0]
    return plan.score(None)  # a weight reading: nothing from the runs


@pytest.mark.parametrize("mode", ["q", "k", "v"])
def test_the_raw_scale_matches_transformer_lens(tiny_model, mode):
    with torch.no_grad():
        reference = tiny_model.all_composition_scores(mode.upper())
    for writer in range(3):
        for reader in range(3):
            got = measure(tiny_model, claim(f"0.{writer}", f"1.{reader}", mode, "raw")).estimate
            assert got == pytest.approx(float(reference[0, writer, 1, reader]), rel=1e-4)


def test_the_planted_induction_pair_composes_on_every_scale():
    model = load("induction").model
    k = {s: measure(model, claim("0.0", "1.0", "k", s)) for s in ("raw", "relative_to_max", "z")}
    assert k["raw"].estimate == pytest.approx(1 / math.sqrt(32), rel=1e-6)  # d_head 32: a perfect rank-32 pair
    assert k["relative_to_max"].estimate == pytest.approx(1.0, abs=1e-6)
    assert k["z"].estimate > 10 and k["z"].details["random_level"] < 0.1
    q = measure(model, claim("0.0", "1.0", "q", "relative_to_max"))
    assert q.estimate == pytest.approx(0.0, abs=1e-6)
    assert claim("0.0", "1.0", "k", "z").model_dump()["scale"] == "z"
    assert CompositionClaim.model_fields["scale"].default == "z"


COMPOSITION_FILE = """
version: 1
model: caesar-easy
dataset: {{kind: caesar, n_seqs: 20, seed: 1}}
claims:
  - id: F1
    statement: s
    kind: composition
    writer: "0.0"
    reader: "1.0"
    mode: k
    scale: {scale}
    threshold: {{at_least: {bound}}}
"""


def test_a_threshold_the_scale_cannot_reach_is_refused(write_yaml):
    refused = r"rule threshold-out-of-range\): the estimate of claim kind 'composition' lies in \[0, 1\]"
    with pytest.raises(SpecErrors, match=refused):
        load_hypothesis(write_yaml(COMPOSITION_FILE.format(scale="relative_to_max", bound=1.2)))
    load_hypothesis(write_yaml(COMPOSITION_FILE.format(scale="z", bound=1.2), "z.yaml"))
