"""The model's predictions given a token match the data's statistics given that token (CLAIMS.md C1).

At the selected positions, average the model's predicted distribution over every
occurrence of each token: a table ``M[token, label]``. The reference is the data's
own conditional distribution of the label given the token at those positions,
``R[token, label]`` (at position 0 of the Caesar task: the first-letter
frequencies, shifted by each rotation), counted from the data
(``label_given_token``) or, better, an exact table the dataset's generator knows
(``reference: <table name>``): counting adds sampling noise to the reference,
which biases the correlation down. estimate = the Pearson correlation of the two
tables over the tokens that occur; the details give the mean total-variation
distance between matching rows. The interval resamples sequences.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from circuitcheck.claims.base import ClaimSpec, CompileContext, claim_kind
from circuitcheck.errors import PlanError
from circuitcheck.plan.interventions import ClaimOutputs, ClaimPlan, Measurement
from circuitcheck.spec.references import Selection
from circuitcheck.stats import SequenceStats, Totals

if TYPE_CHECKING:  # torch is imported where a model is needed: `validate` loads this module without it
    import torch


def table_correlation(model_sums: torch.Tensor, label_counts: torch.Tensor, token_counts: torch.Tensor) -> torch.Tensor:
    """Correlation of the row-normalised tables; inputs ``[..., V, L]``, ``[..., V, L]``, ``[..., V]``."""
    seen = token_counts > 0
    denom = token_counts.clamp(min=1)[..., None]
    m, r = model_sums / denom, label_counts / denom
    w = seen[..., None].expand_as(m).double()
    n = w.sum((-2, -1), keepdim=True)
    mc = m - (m * w).sum((-2, -1), keepdim=True) / n
    rc = r - (r * w).sum((-2, -1), keepdim=True) / n
    cov = (mc * rc * w).sum((-2, -1))
    return cov / ((mc.square() * w).sum((-2, -1)) * (rc.square() * w).sum((-2, -1))).sqrt()


@claim_kind
class ReferenceTableClaim(ClaimSpec):
    """The model's mean prediction given a token matches the data's label distribution: their correlation."""

    # The kind's reference (`circuitcheck docs KIND`): exact estimate, interval, a worked example, traps.
    formula = """\
At the scored positions, for every token t that occurs there (n_t occurrences):
  M[t, l] = (sum over the occurrences of the clean model's softmax probability of label l) / n_t
  R[t, l] = (label l's count after t) / n_t   (reference: label_given_token)
          or the dataset's exact table       (reference: <table name>)
estimate = Pearson correlation of M and R over every cell (t, l) of the tokens that occur
details: the mean total-variation distance 0.5 * sum_l |M[t, l] - R[t, l]| over those tokens
"""
    example = """\
version: 1
name: reference-table-example
model: caesar-easy
dataset: {kind: caesar, n_seqs: 200, seed: 0}
positions:
  first: {indices: [0]}
claims:
  - id: C1
    statement: At position 0 the model's prediction given the first letter matches the rotation distribution.
    kind: reference_table
    positions: first
    reference: rotation_given_first_letter
    threshold: {at_least: 0.9}
"""
    resamples = (
        "Sequences: a percentile bootstrap (statistics.bootstrap resamples, seeded) draws sequences with replacement "
        "and recomputes the estimate from the drawn sequences' totals, every numerator and denominator from the same "
        "draw. Every per-token sum and count is resampled together, then the tables and their correlation are "
        "recomputed."
    )
    traps = (
        "A counted reference (label_given_token) carries sampling noise that biases the correlation down; use the "
        "dataset's exact table where it provides one.",
        "A correlation over all cells is dominated by the common tokens' large entries; the total-variation detail "
        "says how far the rows actually are.",
    )

    kind: Literal["reference_table"] = "reference_table"
    positions: Selection = Field(description="Where the model's predictions are compared with the data")
    reference: str = Field(
        description="label_given_token (counted from the data), or the name of an exact table the dataset provides"
    )

    def _exact_table(self, ctx: CompileContext, vocab: int, n_labels: int) -> torch.Tensor | None:
        if self.reference == "label_given_token":
            return None
        tables = ctx.batch.tables
        if self.reference not in tables:
            known = ", ".join(["label_given_token", *sorted(tables)])
            raise PlanError(
                ctx.path + ("reference",), f"the dataset provides no table {self.reference!r}", f"use one of: {known}"
            )
        table = tables[self.reference].double()
        if table.shape != (vocab, n_labels):
            raise PlanError(
                ctx.path + ("reference",),
                f"table {self.reference!r} is {tuple(table.shape)}, the model needs {(vocab, n_labels)}",
            )
        return table

    def compile(self, ctx: CompileContext) -> ClaimPlan:
        import torch

        mask = ctx.scored(self.positions)
        vocab = int(ctx.model.cfg.d_vocab)
        n_labels = int(ctx.model.cfg.d_vocab_out) if int(ctx.model.cfg.d_vocab_out) > 0 else vocab
        tokens, labels = ctx.batch.tokens, ctx.batch.next_token
        n = ctx.batch.n_seqs
        seq_of, _ = mask.nonzero(as_tuple=True)
        tok_at, lab_at = tokens[mask], labels[mask]
        exact = self._exact_table(ctx, vocab, n_labels)

        def per_seq_tables(probs: torch.Tensor) -> dict[str, torch.Tensor]:
            cell = tok_at * n_labels
            model_sums = torch.zeros(n, vocab * n_labels, dtype=torch.float64)
            model_sums.index_put_(
                (seq_of[:, None], cell[:, None] + torch.arange(n_labels)), probs.double(), accumulate=True
            )
            label_counts = torch.zeros(n, vocab * n_labels, dtype=torch.float64)
            if exact is None:
                label_counts.index_put_(
                    (seq_of, cell + lab_at), torch.ones(len(seq_of), dtype=torch.float64), accumulate=True
                )
            else:
                label_counts.index_put_(
                    (seq_of[:, None], cell[:, None] + torch.arange(n_labels)), exact[tok_at], accumulate=True
                )
            token_counts = torch.zeros(n, vocab, dtype=torch.float64)
            token_counts.index_put_((seq_of, tok_at), torch.ones(len(seq_of), dtype=torch.float64), accumulate=True)
            return {"model": model_sums, "labels": label_counts, "tokens": token_counts}

        def statistic(t: Totals) -> torch.Tensor:
            shape = t["model"].shape[:-1] + (vocab, n_labels)
            return table_correlation(t["model"].reshape(shape), t["labels"].reshape(shape), t["tokens"])

        def score(out: ClaimOutputs) -> Measurement:
            probs = out.clean_at(mask).float().softmax(-1)
            stats = SequenceStats(per_seq_tables(probs), statistic)
            t = stats.totals()
            counts = t["tokens"]
            seen = counts > 0
            m = t["model"].reshape(vocab, n_labels)[seen] / counts[seen, None]
            r = t["labels"].reshape(vocab, n_labels)[seen] / counts[seen, None]
            tv = float(0.5 * (m - r).abs().sum(-1).mean())
            estimate = stats.estimate()
            found = (
                f"at '{self.positions}' the model's mean prediction per token correlates {estimate:.3f} with the "
                "data's label "
                f"distribution given the token ({int(seen.sum())} tokens seen, {int(mask.sum())} positions; mean total "
                f"variation {tv:.3f})"
            )
            return Measurement(
                estimate,
                found,
                {"mean_total_variation": tv, "tokens_seen": int(seen.sum()), "n_positions": int(mask.sum())},
                stats,
            )

        lines = (
            f"clean run; compare the model's mean prediction per token at '{self.positions}' with the data's label "
            "distribution given that token",
        )
        return ClaimPlan(
            claim_id=self.id, kind=self.kind, variants={}, captures=frozenset(), describe=lines, score=score,
            clean_rows=(mask,),
        )
