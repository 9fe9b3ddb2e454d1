"""The seeded trigram dataset kind (token tensors from a file: :mod:`circuitcheck.data.token_file`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from circuitcheck.data.batch import TokenBatch
from circuitcheck.data.registry import DataContext, DatasetSpec, dataset_kind
from circuitcheck.data.trigram import generate_trigram_batch, make_trigram_set
from circuitcheck.errors import PlanError
from circuitcheck.spec.base import Seed


@dataset_kind
class TrigramDataset(DatasetSpec):
    """Random tokens with planted trigrams; the trigram set comes from the model card's task."""

    kind: Literal["trigram"] = "trigram"
    n_seqs: int = Field(gt=0, le=100_000)
    seed: Seed
    density: float = Field(gt=0.0, lt=1.0)
    seq_len: int | None = Field(default=None, gt=2)
    plant: Literal["all", "repeated"] = Field(
        default="all",
        description="repeated: plant only the trigrams whose first two tokens are equal, e.g. (72, 72, 48), "
        "which are rare otherwise (T7)",
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
        if seq_len < 3:
            raise PlanError(
                ("dataset",), f"the model card's task.seq_len {seq_len} leaves no room for a trigram (at least 3)"
            )
        if int(task["d_vocab"]) != ctx.d_vocab:  # checked first: the generator allocates d_vocab^2 entries
            raise PlanError(
                ("dataset",),
                f"the model card's task.d_vocab {task['d_vocab']} differs from config.d_vocab {ctx.d_vocab}",
            )
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
                raise PlanError(
                    ("dataset", "plant"), "the model's trigram set has no trigram with two equal leading tokens"
                )
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
