"""Composition between two heads (CLAIMS.md F1, Elhage et al. 2021), on a calibrated scale.

The raw score is ``||W_OV(writer) @ M(reader)||_F / (||W_OV(writer)||_F ||M(reader)||_F)``, with M the
reader's W_QK (Q-composition), W_QK^T (K-composition) or W_OV (V-composition), as TransformerLens
computes it. Its range depends on the matrices: a perfect rank-r composition (the reader reads exactly
the subspace the writer writes, flat spectra) scores 1/sqrt(r), and two matrices of random orientation
score about 1/sqrt(d_model). A raw threshold therefore means something different on every model.

``scale`` puts it on a scale that does not:

- ``relative_to_max``: raw / the best raw score these two matrices can reach, whatever their orientation.
  With singular values a_i and b_i (descending), the best is sqrt(sum a_i^2 b_i^2) / (||A|| ||B||): the
  writer's output directions aligned, in order, with the reader's input directions (von Neumann's trace
  inequality). 1.0 is a perfect composition; 0 means the reader ignores what the writer writes.
- ``z`` (the default): (raw - mean) / sd of the raw score of the same two matrices with the writer's output
  rotated by a random orthogonal matrix (``null_draws`` Haar draws, seeded by ``null_seed``): how many
  standard deviations more aligned than chance the two heads are, for these spectra. ``at_least: 3``
  reads "composes" on every model; the details also give the one-sided p-value.
- ``raw``: the score itself.

Every scale's value and the random level are in the details, read from the weights (no sampling).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from circuitcheck.claims.base import ClaimSpec, CompileContext, claim_kind
from circuitcheck.claims.weight_common import ov_matrix, qk_matrix, weight_plan
from circuitcheck.errors import PlanError
from circuitcheck.plan.interventions import ClaimPlan, Measurement
from circuitcheck.spec.base import Seed
from circuitcheck.spec.components import HeadRef

if TYPE_CHECKING:  # torch is imported where a model is needed: `validate` loads this module without it
    import torch

Scale = Literal["raw", "relative_to_max", "z"]
NULL_CHUNK = 256
"""Random rotations drawn per batch (bounds memory: chunk x d_model x rank doubles)."""


def composition_score(left: torch.Tensor, right: torch.Tensor) -> float:
    """The raw Frobenius composition score of ``left @ right`` (NaN when either matrix is zero)."""
    left, right = left.double(), right.double()
    denom = float(left.norm() * right.norm())
    return float((left @ right).norm()) / denom if denom > 0 else float("nan")


def _spectrum(matrix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``U, S, Vh`` of ``matrix`` cut to its numerical rank, and the full singular values."""
    import torch

    u, s, vh = torch.linalg.svd(matrix.double(), full_matrices=False)
    rank = int((s > s.max() * 1e-10).sum()) if s.numel() and float(s.max()) > 0 else 0
    return u[:, :rank], s[:rank], vh[:rank], s


def best_score(left: torch.Tensor, right: torch.Tensor) -> float:
    """The largest raw score ``left`` and ``right`` reach over every orientation of one against the other:
    ``sqrt(sum_i a_i^2 b_i^2) / (||left|| ||right||)``, singular values paired in descending order.
    For two flat rank-r spectra it is ``1/sqrt(r)``."""
    import torch

    a = torch.linalg.svdvals(left.double())
    b = torch.linalg.svdvals(right.double())
    n = min(len(a), len(b))
    denom = float(left.double().norm() * right.double().norm())
    if denom == 0:
        return float("nan")
    return float((a[:n].square() * b[:n].square()).sum().sqrt()) / denom


def rotation_null(left: torch.Tensor, right: torch.Tensor, draws: int, seed: int) -> torch.Tensor:
    """Raw scores of ``left @ Q @ right`` for ``draws`` Haar-random orthogonal ``Q`` (seeded).

    Only the writer's right singular vectors and the reader's left ones meet, so with ``left = Ua Sa Va^T``
    and ``right = Ub Sb Vb^T`` the score is ``||Sa (Va^T Q Ub) Sb|| / (||Sa|| ||Sb||)``; ``Va^T Q Ub`` has the
    law of the top-left ``rank_a x rank_b`` block of a Haar matrix: the first ``rank_a`` rows of the Q factor
    (positive-diagonal R, from a Cholesky factor) of a ``d x rank_b`` Gaussian matrix.
    """
    import torch

    _, sa, _, _ = _spectrum(left)
    _, sb, _, _ = _spectrum(right)
    d = left.shape[1]
    if len(sa) == 0 or len(sb) == 0:
        return torch.full((draws,), float("nan"), dtype=torch.float64)
    gen = torch.Generator().manual_seed(seed)
    denom = sa.norm() * sb.norm()
    scores = []
    for start in range(0, draws, NULL_CHUNK):
        n = min(NULL_CHUNK, draws - start)
        gauss = torch.randn(n, d, len(sb), generator=gen, dtype=torch.float64)
        upper = torch.linalg.cholesky(gauss.mT @ gauss).mT  # gauss = Q @ upper, Q with orthonormal columns
        block = torch.linalg.solve_triangular(upper, gauss[:, : len(sa), :], upper=True, left=False)
        scores.append((sa[None, :, None] * block * sb[None, None, :]).flatten(1).norm(dim=1) / denom)
    return torch.cat(scores)


def calibrated(left: torch.Tensor, right: torch.Tensor, draws: int, seed: int) -> dict[str, float]:
    """Every scale of the composition of ``left`` and ``right``, with the random-orientation null."""
    raw = composition_score(left, right)
    best = best_score(left, right)
    null = rotation_null(left, right, draws, seed)
    mean, sd = float(null.mean()), float(null.std())
    return {
        "raw": raw,
        "best_possible": best,
        "relative_to_max": raw / best if best > 0 else float("nan"),
        "random_level": mean,
        "random_sd": sd,
        "z": (raw - mean) / sd if sd > 0 else float("nan"),
        "p_value": (1 + int((null >= raw).sum())) / (1 + draws) if raw == raw else float("nan"),
        "relative_random_level": mean / best if best > 0 else float("nan"),
    }


@claim_kind
class CompositionClaim(ClaimSpec):
    """A later head reads what an earlier one writes: the Q-, K- or V-composition score, from the weights, on
    the chosen ``scale`` (default ``z``: standard deviations above randomly oriented matrices)."""

    # The kind's reference (`circuitcheck docs KIND`): exact estimate, interval, a worked example, traps.
    formula = """\
A = W_OV(writer) = W_V W_O;  B = W_QK(reader) = W_Q W_K^T (mode q), W_QK(reader)^T (mode k), W_OV(reader) (v)
raw = ||A B||_F / (||A||_F ||B||_F)
scale: raw               estimate = raw
scale: relative_to_max   estimate = raw / best,  best = sqrt(sum_i a_i^2 b_i^2) / (||A||_F ||B||_F)
                         (a_i, b_i: singular values of A and B, descending, paired in order)
scale: z                 estimate = (raw - mean_null) / sd_null, the null: raw score of A Q B for
                         null_draws Haar-random orthogonal Q (seeded by null_seed)
details: every scale, the random level and p = (1 + #{null >= raw}) / (1 + null_draws)
"""
    example = """\
version: 1
name: composition-example
model: caesar-easy
dataset: {kind: caesar, n_seqs: 200, seed: 0}
claims:
  - id: F1
    statement: Head 1.0's keys read what head 0.0 writes (K-composition).
    kind: composition
    writer: "0.0"
    reader: "1.0"
    mode: k
    scale: z
    threshold: {at_least: 3}
"""
    resamples = (
        "Nothing: it is read from the weights, with no sampling uncertainty, so the interval is the estimate itself. "
        "The random rotations of the z scale are a null for the score, not a resample of data."
    )
    traps = (
        "A raw threshold means something different on every model: chance is about 1/sqrt(d_model), and a perfect "
        "rank-r composition scores only 1/sqrt(r). Use z (the default) or relative_to_max.",
        "The whole-matrix score misses a composition through a small subspace (the positional embeddings alone).",
        "The reader must sit in a later layer than the writer.",
    )

    kind: Literal["composition"] = "composition"
    writer: HeadRef = Field(description="The earlier head, 'L.H'")
    reader: HeadRef = Field(description="The later head, 'L.H'")
    mode: Literal["q", "k", "v"]
    scale: Scale = Field(
        default="z",
        description=(
            "z: standard deviations above the same matrices in random orientation (default; 'composes' is about "
            "at_least: 3 on any model); relative_to_max: raw / the best score these matrices can reach (1.0 = "
            "perfect); raw: the Frobenius score, whose chance level is about 1/sqrt(d_model)"
        ),
    )
    null_draws: int = Field(default=1000, ge=100, le=100_000, description="Random rotations in the null (z, p)")
    null_seed: Seed = Field(default=0, description="Seed of the random rotations")

    def compile(self, ctx: CompileContext) -> ClaimPlan:
        (wl, wh), (rl, rh) = ctx.head_ref(self.writer, "writer"), ctx.head_ref(self.reader, "reader")
        if rl <= wl:
            raise PlanError(
                ctx.path + ("reader",),
                f"the reader {self.reader} must sit in a later layer than the writer {self.writer}",
            )
        model = ctx.model

        def measure() -> Measurement:
            left = ov_matrix(model, wl, wh)
            right = {"q": qk_matrix(model, rl, rh), "k": qk_matrix(model, rl, rh).T, "v": ov_matrix(model, rl, rh)}[
                self.mode
            ]
            v = calibrated(left, right, self.null_draws, self.null_seed)
            estimate = v[self.scale]
            shown = {"raw": "raw score", "relative_to_max": "relative to the best possible", "z": "z"}[self.scale]
            found = (
                f"{self.mode.upper()}-composition of {self.reader} on {self.writer}: {shown} {estimate:.4g} "
                f"(raw {v['raw']:.4f}; random orientations {v['random_level']:.4f} ± {v['random_sd']:.4f} over "
                f"{self.null_draws} draws, z {v['z']:.2f}, p {v['p_value']:.3g}; the best these spectra allow "
                f"{v['best_possible']:.4f}, so {v['relative_to_max']:.3f} of it against "
                f"{v['relative_random_level']:.3f} by chance)"
            )
            details: dict[str, float | int | str] = {**v, "scale": self.scale, "null_draws": self.null_draws}
            return Measurement(estimate, found, details, exact=True)

        return weight_plan(
            self.id, self.kind,
            (f"{self.mode.upper()}-composition: {self.writer} -> {self.reader}, on the {self.scale} scale",), measure,
        )
