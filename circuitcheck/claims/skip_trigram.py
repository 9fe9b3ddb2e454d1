""""The model is an ensemble of bigrams and skip-trigrams" (CLAIMS.md X1, seed 003).

Fit the best additive bigram + skip-trigram ensemble to the model's output
distribution on one half of the sequences (:mod:`circuitcheck.claims.additive_fit`),
then compare it with the model on the other half. estimate = top-1 agreement
between the ensemble and the model (``measure: agreement``) or the ensemble's own
accuracy on the labels (``measure: accuracy``). The interval resamples the held-out
sequences for the fitted ensemble; it does not refit. On seed 003's XOR task no
ensemble does better than chance, so the claim is written ``expect: refuted``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from circuitcheck.claims.additive_fit import EarlierPosition, fit_ensemble, skip_trigram_features
from circuitcheck.claims.base import ClaimSpec, CompileContext, claim_kind
from circuitcheck.errors import PlanError
from circuitcheck.plan.interventions import ClaimOutputs, ClaimPlan, Measurement
from circuitcheck.spec.base import Seed
from circuitcheck.spec.references import Selection
from circuitcheck.stats import SequenceStats, per_sequence, safe_ratio

MAX_PARAMETERS = 20_000_000


@claim_kind
class SkipTrigramClaim(ClaimSpec):
    """An additive bigram + skip-trigram ensemble predicts what the model predicts: held-out top-1 agreement."""

    kind: Literal["skip_trigram_fit"] = "skip_trigram_fit"
    positions: Selection = Field(description="Where the ensemble is fitted and compared")
    earlier_position: EarlierPosition = Field(
        description="absolute: 'token A at position P' (seed 003); offset; ignored"
    )
    measure: Literal["agreement", "accuracy"] = Field(
        description="agreement: top-1 agreement with the model; accuracy: on the labels"
    )
    holdout: float = Field(default=0.5, gt=0.0, lt=1.0, description="Fraction of sequences held out of the fit")
    seed: Seed = Field(default=0, description="Seed of the fit/held-out split")
    l2: float = Field(default=1e-4, ge=0.0)
    max_iter: int = Field(default=500, ge=10, le=10_000)

    def compile(self, ctx: CompileContext) -> ClaimPlan:
        import torch  # here, not at the top: `validate` loads this module without torch

        mask = ctx.scored(self.positions)
        tokens = ctx.batch.tokens
        feats = skip_trigram_features(tokens, mask, self.earlier_position)
        n_out = int(ctx.model.cfg.d_vocab_out if ctx.model.cfg.d_vocab_out > 0 else ctx.model.cfg.d_vocab)
        n_params = (feats.n_features + int(ctx.model.cfg.d_vocab) + 1) * n_out
        if n_params > MAX_PARAMETERS:
            raise PlanError(
                ctx.path + ("earlier_position",),
                f"the ensemble would have {n_params:,} weights (limit {MAX_PARAMETERS:,})",
                "use earlier_position: ignored, or fewer positions",
            )
        gen = torch.Generator().manual_seed(self.seed)
        held_seq = torch.rand(ctx.batch.n_seqs, generator=gen) < self.holdout
        seq_of_row = mask.nonzero()[:, 0]
        held = held_seq[seq_of_row]
        if held.all() or not held.any():
            raise PlanError(ctx.path + ("holdout",), "the split leaves no sequence on one side", "use more sequences")
        held_mask = mask & held_seq[:, None]

        def score(out: ClaimOutputs) -> Measurement:
            model_logp = out.clean_logits[mask].float().log_softmax(-1)
            fit = fit_ensemble(feats, model_logp, ~held, self.l2, self.max_iter)
            fit_top = fit.logits.argmax(-1)
            agree = (fit_top == model_logp.argmax(-1)).double()
            labels = out.batch.next_token[mask]
            correct = (fit_top == labels).double()
            chosen = agree if self.measure == "agreement" else correct
            per_seq = {"hits": per_sequence(chosen[held], held_mask), "n": held_mask.sum(1).double()}
            stats = SequenceStats(per_seq, lambda t: safe_ratio(t["hits"], t["n"]))
            kl = (model_logp.exp() * (model_logp - fit.logits.log_softmax(-1))).sum(-1)
            details = {
                "agreement_heldout": float(agree[held].mean()),
                "agreement_fit_half": float(agree[~held].mean()),
                "ensemble_accuracy_heldout": float(correct[held].mean()),
                "model_accuracy_heldout": float((model_logp.argmax(-1) == labels)[held].double().mean()),
                "kl_model_to_ensemble_heldout": float(kl[held].mean()),
                "n_features": feats.n_features,
                "n_positions_fit": int((~held).sum()),
                "n_positions_heldout": int(held.sum()),
                "lbfgs_evaluations": fit.iterations,
                "fit_loss": fit.loss,
            }
            estimate = stats.estimate()
            found = (
                f"the best bigram + skip-trigram ensemble ({feats.n_features} skip-trigram features, earlier positions "
                f"{self.earlier_position}) "
                f"agrees with the model's top-1 prediction at {details['agreement_heldout']:.1%} of {int(held.sum())} "
                "held-out positions; "
                f"its accuracy {details['ensemble_accuracy_heldout']:.1%} against the model's "
                f"{details['model_accuracy_heldout']:.1%}; "
                f"KL(model || ensemble) {details['kl_model_to_ensemble_heldout']:.3f} nats"
            )
            return Measurement(estimate, found, details, stats)

        lines = (
            f"clean run; fit a softmax regression on {feats.n_features} skip-trigram + bigram features to the model's "
            "outputs at "
            f"'{self.positions}' on {int((~held).sum())} positions",
            f"compare with the model on {int(held.sum())} held-out positions; estimate = {self.measure}",
        )
        return ClaimPlan(
            claim_id=self.id, kind=self.kind, variants={}, captures=frozenset(), describe=lines, score=score
        )
