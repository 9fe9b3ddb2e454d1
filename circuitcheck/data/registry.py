"""Dataset kinds: a spec class per kind, registered by its ``kind`` tag.

The registry lives in :mod:`circuitcheck.spec.kinds`, so that loading a file needs no torch;
dataset modules import torch inside the functions that build tokens, for the same reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from circuitcheck.data.batch import TokenBatch
from circuitcheck.errors import PlanError
from circuitcheck.spec.kinds import DatasetFields, dataset_kinds

__all__ = ["CARD_FIX", "DataContext", "DatasetSpec", "build_dataset", "check_batch", "dataset_kind", "dataset_kinds"]

CARD_FIX = "regenerate the model card with the script that made the model (models/train_*.py)"


@dataclass(frozen=True)
class DataContext:
    """What a dataset may read: the model card, the hypothesis file's folder and the model's tokenizer."""

    model_card: dict[str, Any]
    base_dir: Path
    d_vocab: int
    n_ctx: int
    base_is: str = "the hypothesis file's folder"
    """How errors name ``base_dir``, the folder a dataset's relative paths resolve against."""
    tokenizer: Any = None
    """The model's ``transformers`` tokenizer (a ``PreTrainedTokenizerBase``), or None: text datasets need it."""
    model_name: str = ""
    """How errors name the model (its zoo name or folder)."""


class DatasetSpec(DatasetFields):
    """A dataset kind: its keys, and how it builds a :class:`TokenBatch` for a model."""

    def build(self, ctx: DataContext) -> TokenBatch:
        raise NotImplementedError


def dataset_kind(cls: type[DatasetSpec]) -> type[DatasetSpec]:
    """Register a dataset spec class under the default of its ``kind`` field."""
    name = cls.model_fields["kind"].default
    cls.kind_name = name
    dataset_kinds.register(name)(cls)
    return cls


def build_dataset(spec: DatasetSpec, ctx: DataContext) -> TokenBatch:
    """``spec.build(ctx)``, then the checks every later stage relies on.

    Builders read their parameters from the model card, which is user input: a missing or
    mistyped task key, or a task vocabulary larger than the model's, must be an error at
    ``dataset``, not a KeyError or an embedding index error in the middle of a run.
    """
    try:
        batch = spec.build(ctx)
    except (KeyError, TypeError, ValueError, IndexError) as err:
        raise PlanError(
            ("dataset", "kind"),
            f"cannot build a {spec.kind!r} dataset from the model card's task: {type(err).__name__}: {err}",
            CARD_FIX,
        ) from None
    check_batch(batch, ctx, spec.kind)
    return batch


def check_batch(batch: TokenBatch, ctx: DataContext, kind: str) -> None:
    tokens = batch.tokens
    if tokens.numel() == 0:
        raise PlanError(("dataset",), f"the {kind!r} dataset is empty: tokens of shape {tuple(tokens.shape)}")
    if batch.seq_len > ctx.n_ctx:
        raise PlanError(
            ("dataset",), f"the {kind!r} dataset has {batch.seq_len} positions; the model's n_ctx is {ctx.n_ctx}"
        )
    bad = (tokens < 0) | (tokens >= ctx.d_vocab)
    if bool(bad.any()):
        seq, pos = (int(x) for x in bad.nonzero()[0])
        raise PlanError(
            ("dataset",),
            f"token ids must lie in [0, {ctx.d_vocab}) (the model's d_vocab); the {kind!r} dataset has "
            f"{int(tokens[seq, pos])} at sequence {seq}, position {pos}",
            "make the model card's task vocabulary match config.d_vocab; " + CARD_FIX,
        )
