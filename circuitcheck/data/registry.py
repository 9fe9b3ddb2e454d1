"""Dataset kinds: a spec class per kind, registered by its ``kind`` tag."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from circuitcheck.data.batch import TokenBatch
from circuitcheck.registry import Registry
from circuitcheck.spec.base import Strict


@dataclass(frozen=True)
class DataContext:
    """What a dataset may read: the model card and the hypothesis file's folder."""

    model_card: dict[str, Any]
    base_dir: Path
    d_vocab: int
    n_ctx: int


class DatasetSpec(Strict):
    kind: str
    kind_name: ClassVar[str] = ""

    def build(self, ctx: DataContext) -> TokenBatch:
        raise NotImplementedError


dataset_kinds: Registry[type[DatasetSpec]] = Registry("dataset kind")


def dataset_kind(cls: type[DatasetSpec]) -> type[DatasetSpec]:
    """Register a dataset spec class under the default of its ``kind`` field."""
    name = cls.model_fields["kind"].default
    cls.kind_name = name
    return dataset_kinds.register(name)(cls)
