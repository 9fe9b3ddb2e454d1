"""Built-in dataset kinds: the seeded trigram generator and token tensors from a file."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from circuitcheck.data.batch import TokenBatch, next_tokens_of
from circuitcheck.data.registry import DataContext, DatasetSpec, dataset_kind
from circuitcheck.data.trigram import generate_trigram_batch, make_trigram_set
from circuitcheck.errors import PlanError


@dataset_kind
class TrigramDataset(DatasetSpec):
    """Random tokens with planted trigrams; the trigram set comes from the model card's task."""

    kind: Literal["trigram"] = "trigram"
    n_seqs: int = Field(gt=0, le=100_000)
    seed: int
    density: float = Field(gt=0.0, lt=1.0)
    seq_len: int | None = Field(default=None, gt=2)
    plant: Literal["all", "repeated"] = Field(
        default="all",
        description="repeated: plant only the trigrams whose first two tokens are equal, e.g. (72, 72, 48), which are rare otherwise (T7)",
    )

    def build(self, ctx: DataContext) -> TokenBatch:
        task = ctx.model_card.get("task")
        if not task or "trigram_seed" not in task:
            raise PlanError(
                ("dataset", "kind"),
                "the model card has no trigram task (task.trigram_seed ...)",
                "use a trigram zoo model, or a 'file' dataset",
            )
        seq_len = self.seq_len or int(task["seq_len"])
        if seq_len > ctx.n_ctx:
            raise PlanError(("dataset", "seq_len"), f"seq_len {seq_len} exceeds the model's n_ctx {ctx.n_ctx}")
        trigrams = make_trigram_set(
            int(task["d_vocab"]), int(task["n_trigrams"]), int(task["trigram_seed"]), int(task.get("n_repeats", 0))
        )
        if "trigrams" in task and trigrams.tolist() != task["trigrams"]:
            raise PlanError(
                ("dataset",),
                "the model card's trigram list differs from the one its task parameters generate",
                "regenerate the card with models/train_trigram.py",
            )
        if self.plant == "repeated":
            trigrams = trigrams[trigrams[:, 0] == trigrams[:, 1]]
            if not len(trigrams):
                raise PlanError(("dataset", "plant"), "the model's trigram set has no trigram with two equal leading tokens")
        batch = generate_trigram_batch(
            n_seqs=self.n_seqs,
            seq_len=seq_len,
            d_vocab=int(task["d_vocab"]),
            trigrams=trigrams,
            density=self.density,
            seed=self.seed,
        )
        params = self.model_dump() | {"trigram_seed": task["trigram_seed"], "n_trigrams": task["n_trigrams"]}
        return TokenBatch(batch.tokens, batch.next_token, batch.roles, params)


@dataset_kind
class FileDataset(DatasetSpec):
    """Token tensors ``[batch, seq]`` from a safetensors or ``.pt`` file; optional ``roles``."""

    kind: Literal["file"] = "file"
    path: str
    tokens_key: str = "tokens"
    roles_key: str | None = None

    def build(self, ctx: DataContext) -> TokenBatch:
        path = (ctx.base_dir / self.path).resolve()
        if not path.is_file():
            raise PlanError(("dataset", "path"), f"no such file: {path}")
        try:
            if path.suffix == ".safetensors":
                from safetensors.torch import load_file

                tensors = load_file(str(path))
            else:
                tensors = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001 - any reader failure is bad input
            raise PlanError(("dataset", "path"), f"cannot read {path}: {err}") from None
        if not isinstance(tensors, dict) or self.tokens_key not in tensors:
            raise PlanError(("dataset", "tokens_key"), f"{path} has no tensor {self.tokens_key!r}")
        tokens = tensors[self.tokens_key].long()
        if tokens.dim() != 2:
            raise PlanError(("dataset", "tokens_key"), f"tokens must be [batch, seq], got {tuple(tokens.shape)}")
        if tokens.shape[1] > ctx.n_ctx:
            raise PlanError(("dataset", "path"), f"sequences of {tokens.shape[1]} exceed n_ctx {ctx.n_ctx}")
        if tokens.min() < 0 or tokens.max() >= ctx.d_vocab:
            raise PlanError(("dataset", "path"), f"token ids must lie in [0, {ctx.d_vocab})")
        roles = torch.zeros_like(tokens)
        if self.roles_key is not None:
            if self.roles_key not in tensors or tensors[self.roles_key].shape != tokens.shape:
                raise PlanError(("dataset", "roles_key"), f"{path} has no roles tensor {self.roles_key!r} shaped like tokens")
            roles = tensors[self.roles_key].long()
        return TokenBatch(tokens, next_tokens_of(tokens), roles, self.model_dump())
