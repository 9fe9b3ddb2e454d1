"""Reading tensor files a user hands us (checkpoints, token files) without running their code.

Only safetensors or ``torch.load(weights_only=True)``. When PyTorch refuses a pickle it advises
``weights_only=False``, which would run whatever code the file holds; that advice is never relayed.

A leaf below both readers (``zoo/`` for checkpoints, ``data/`` for token files). The ``file``
dataset kind imports it when ``circuitcheck validate`` loads every kind, so torch is imported
where a file is read.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any

PLAIN_TENSORS_FIX = (
    "re-save the weights as a plain state dict, torch.save(model.state_dict(), path), "
    "or as safetensors (safetensors.torch.save_file)"
)


class UnreadableTensors(Exception):
    """Why a tensor file cannot be read; the caller adds the path and the spec location."""


def printable(text: str, limit: int = 200) -> str:
    """One line of a message that came from a file: no control characters (terminal escapes), bounded."""
    line = (text.strip().splitlines() or [""])[0]
    line = "".join(c if c.isprintable() else "?" for c in line)
    return line if len(line) <= limit else line[:limit] + "..."


def read_tensors(path: Path) -> Any:
    """The file's contents: a dict of tensors for any well-formed file (callers check the type)."""
    import torch

    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        # Every weights_only refusal lands here; keep only the refused global's name, if any.
        found = re.search(r"GLOBAL ([\w.]{1,100})", str(err))
        what = f"a pickled Python object ({found.group(1)})" if found else "pickled data that is not plain tensors"
        raise UnreadableTensors(
            f"it holds {what}; circuitcheck loads only plain tensors (torch.load with weights_only=True) "
            "and never runs code from a file"
        ) from None
    except Exception as err:  # noqa: BLE001 - any reader failure is the file's fault, not ours
        text = str(err)
        reason = "not a tensor file" if "weights_only" in text or not text else printable(text)
        raise UnreadableTensors(f"{reason} ({type(err).__name__})") from None
