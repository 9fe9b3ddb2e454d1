"""Reading the JSON object a model folder describes itself with (a zoo card, a Hugging Face config)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from circuitcheck.errors import ModelLoadError


def read_json_object(path: Path, what: str) -> dict[str, Any]:
    """``path``'s JSON object; anything else (unreadable, not JSON, not an object) is a :class:`ModelLoadError`
    naming the file and ``what`` it should be ("model card")."""
    try:
        value = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ModelLoadError(f"{path}: cannot read the {what}: {err}") from None
    if not isinstance(value, dict):
        raise ModelLoadError(f"{path}: a {what} is a JSON object, got {type(value).__name__}")
    return value
