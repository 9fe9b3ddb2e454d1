"""The built-in metrics. Each is tested against an independent reference in tests/.

They use tensor methods only, so this module imports without torch (see :mod:`.registry`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from circuitcheck.metrics.registry import metric

if TYPE_CHECKING:
    import torch


@metric("accuracy", higher_is_better=True, reads_clean=False)
def accuracy(logits: torch.Tensor, targets: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
    """1 where the top logit is the correct next token, else 0."""
    return (logits.argmax(-1) == targets).float()


@metric("correct_prob", higher_is_better=True, reads_clean=False)
def correct_prob(logits: torch.Tensor, targets: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
    """Probability on the correct next token."""
    return logits.softmax(-1).gather(-1, targets[:, None]).squeeze(-1)


@metric("logprob", higher_is_better=True, reads_clean=False)
def logprob(logits: torch.Tensor, targets: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
    """Log-probability of the correct next token."""
    return logits.log_softmax(-1).gather(-1, targets[:, None]).squeeze(-1)


@metric("logit_diff", higher_is_better=True, reads_clean=False, reads_counterfactual=True)
def logit_diff(
    logits: torch.Tensor, targets: torch.Tensor, clean: torch.Tensor, counterfactual: torch.Tensor | None = None
) -> torch.Tensor:
    """Correct-token logit minus the counterfactual's where the dataset names one, else minus the largest other.

    A ``prompts`` dataset with ``counterfactual: "{B}"`` names one at its last position (``end``):
    there the score is logit(answer) - logit(counterfactual), IOI's logit difference. At every other
    position, and for datasets without a counterfactual, it is the correct token's margin over the
    best other token (positive exactly where the correct token is the top prediction).
    """
    correct = logits.gather(-1, targets[:, None]).squeeze(-1)
    others = logits.scatter(-1, targets[:, None], float("-inf"))
    margin = correct - others.max(-1).values
    if counterfactual is None:
        return margin
    named = counterfactual >= 0  # NO_TARGET (-1) where the dataset names no counterfactual
    wrong = logits.gather(-1, counterfactual.clamp(min=0)[:, None]).squeeze(-1)
    return margin.where(~named, correct - wrong)


@metric("loss", higher_is_better=False, reads_clean=False)
def loss(logits: torch.Tensor, targets: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the correct next token (nats)."""
    return -logprob(logits, targets, clean)


@metric("kl", higher_is_better=False)
def kl(logits: torch.Tensor, targets: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
    """KL(clean model || this run) of the next-token distributions (nats)."""
    clean_logp = clean.log_softmax(-1)
    return (clean_logp.exp() * (clean_logp - logits.log_softmax(-1))).sum(-1)


@metric("top1_agreement", higher_is_better=True)
def top1_agreement(logits: torch.Tensor, targets: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
    """1 where this run's top prediction equals the clean model's, else 0."""
    return (logits.argmax(-1) == clean.argmax(-1)).float()
