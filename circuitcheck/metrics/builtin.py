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


@metric("logit_diff", higher_is_better=True, reads_clean=False)
def logit_diff(logits: torch.Tensor, targets: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
    """Correct-token logit minus the largest other logit."""
    correct = logits.gather(-1, targets[:, None]).squeeze(-1)
    others = logits.scatter(-1, targets[:, None], float("-inf"))
    return correct - others.max(-1).values


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
