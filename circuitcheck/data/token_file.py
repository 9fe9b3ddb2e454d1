"""The ``file`` dataset kind: token tensors ``[batch, seq]`` from a safetensors or ``.pt`` file.

The file is user input, so everything torch would trip over later is refused here with the
file's name: an empty tensor, float ids (never truncated to integers), ids outside the model's
vocabulary, a wrong number of dimensions. ``.pt`` files are read with ``weights_only=True``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

from circuitcheck.data.batch import ROLE_NAMES, TokenBatch, next_tokens_of
from circuitcheck.data.registry import DataContext, DatasetSpec, dataset_kind
from circuitcheck.errors import PlanError
from circuitcheck.tensor_files import UnreadableTensors, read_tensors

if TYPE_CHECKING:  # torch is imported where tokens are read: `validate` loads this module without it
    import torch

SAVE_FIX = "save a LongTensor [batch, seq] of token ids, e.g. torch.save({'tokens': ids.long()}, path)"


@dataset_kind
class FileDataset(DatasetSpec):
    """Token tensors ``[batch, seq]`` from a safetensors or ``.pt`` file; optional ``roles``."""

    kind: Literal["file"] = "file"
    path: str
    tokens_key: str = "tokens"
    roles_key: str | None = None

    def build(self, ctx: DataContext) -> TokenBatch:
        import torch

        path = _existing(self.path, ctx)
        try:
            tensors = read_tensors(path)
        except UnreadableTensors as err:
            raise PlanError(("dataset", "path"), f"cannot read {path}: {err}", SAVE_FIX) from None
        if not isinstance(tensors, dict) or self.tokens_key not in tensors:
            keys = (
                ", ".join(repr(str(k)) for k in tensors)
                if isinstance(tensors, dict)
                else f"not a dict: {type(tensors).__name__}"
            )
            raise PlanError(
                ("dataset", "tokens_key"), f"{path} has no tensor {self.tokens_key!r} (it holds {keys or 'nothing'})"
            )
        tokens = _ids(path, self.tokens_key, tensors[self.tokens_key], ctx.d_vocab, "token", ("dataset", "path"))
        if tokens.shape[1] < 2:
            raise PlanError(
                ("dataset", "path"),
                f"{path}: sequences of 1 token have no next-token targets",
                "save sequences of at least 2 tokens",
            )
        if tokens.shape[1] > ctx.n_ctx:
            raise PlanError(
                ("dataset", "path"),
                f"{path}: sequences of {tokens.shape[1]} tokens exceed the model's n_ctx {ctx.n_ctx}",
            )
        roles = torch.zeros_like(tokens)
        if self.roles_key is not None:
            if self.roles_key not in tensors:
                raise PlanError(("dataset", "roles_key"), f"{path} has no roles tensor {self.roles_key!r}")
            roles = _ids(
                path, self.roles_key, tensors[self.roles_key], len(ROLE_NAMES), "role", ("dataset", "roles_key")
            )
            if roles.shape != tokens.shape:
                raise PlanError(
                    ("dataset", "roles_key"),
                    f"{path}: roles {tuple(roles.shape)} are not shaped like tokens {tuple(tokens.shape)}",
                )
        return TokenBatch(tokens, next_tokens_of(tokens), roles, self.model_dump())


def _existing(text: str, ctx: DataContext) -> Path:
    try:
        path = (ctx.base_dir / text).resolve()
    except (ValueError, OSError) as err:  # a NUL byte, a link loop
        raise PlanError(("dataset", "path"), f"{text!r:.80} is not a usable path: {err}") from None
    if not path.is_file():
        raise PlanError(("dataset", "path"), f"no such file: {path} (resolved against {ctx.base_is} {ctx.base_dir})")
    return path


def _ids(path: Path, key: str, value: object, limit: int, what: str, where: tuple[str, ...]) -> torch.Tensor:
    """``value`` as int64 ids ``[batch, seq]`` in ``[0, limit)``, or a PlanError naming the file and the fix."""
    import torch

    if not isinstance(value, torch.Tensor):
        raise PlanError(where, f"{path}: {key!r} is a {type(value).__name__}, not a tensor", SAVE_FIX)
    if value.dtype not in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8):
        kind = "integers" if what == "token" else "integer role codes"
        # Casting would silently truncate 3.7 to 3 and turn NaN into garbage: refuse instead.
        raise PlanError(
            where, f"{path}: {what} ids must be {kind}, got {str(value.dtype).removeprefix('torch.')}", SAVE_FIX
        )
    if value.dim() != 2:
        raise PlanError(where, f"{path}: {key!r} must be [batch, seq], got shape {tuple(value.shape)}", SAVE_FIX)
    if value.numel() == 0:
        raise PlanError(
            where, f"{path}: {key!r} is empty (shape {tuple(value.shape)})",
            "save at least one sequence of at least two tokens (targets are the next token)",
        )
    ids = value.to(torch.int64)
    bad = (ids < 0) | (ids >= limit)
    if bool(bad.any()):
        seq, pos = (int(x) for x in bad.nonzero()[0])
        raise PlanError(
            where,
            f"{what} ids must lie in [0, {limit}); {path} has {int(ids[seq, pos])} at sequence {seq}, position {pos}",
        )
    return ids
