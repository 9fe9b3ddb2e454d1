"""Load a model by zoo name or path: TL-native safetensors, or legacy HookedTransformer dicts.

A model directory holds ``card.json`` (config + checkpoint file name + facts) and the
checkpoint. Only safetensors or ``torch.load(weights_only=True)`` are ever used.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from circuitcheck.errors import ModelLoadError
from circuitcheck.zoo.build import build_bridge

CARD_NAME = "card.json"
FORMATS = ("tl-native", "hooked-transformer")


def zoo_root() -> Path:
    """``$CIRCUITCHECK_ZOO`` or the repository's ``models/`` folder."""
    env = os.environ.get("CIRCUITCHECK_ZOO")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "models"


def zoo_names() -> list[str]:
    root = zoo_root()
    if not root.is_dir():
        return []
    return sorted(p.parent.name for p in root.glob(f"*/{CARD_NAME}"))


def resolve_model_dir(name_or_path: str, base: Path | None = None) -> Path:
    """A zoo name, or a directory/card path (relative to ``base`` if given)."""
    candidates = []
    if "/" not in name_or_path and not name_or_path.startswith("."):
        candidates.append(zoo_root() / name_or_path)
    raw = Path(name_or_path)
    candidates.append(raw if raw.is_absolute() or base is None else base / raw)
    for cand in candidates:
        if cand.is_file() and cand.name == CARD_NAME:
            return cand.parent
        if (cand / CARD_NAME).is_file():
            return cand
    known = ", ".join(zoo_names()) or "none found"
    raise ModelLoadError(
        f"no model {name_or_path!r}: expected a zoo name or a directory holding {CARD_NAME}. "
        f"Zoo models: {known}."
    )


def load_zoo_card(name_or_path: str, base: Path | None = None) -> dict[str, Any]:
    path = resolve_model_dir(name_or_path, base) / CARD_NAME
    try:
        card = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ModelLoadError(f"{path}: cannot read model card: {err}") from None
    for key in ("config", "checkpoint"):
        if key not in card:
            raise ModelLoadError(f"{path}: model card lacks {key!r}")
    card.setdefault("format", "tl-native")
    if card["format"] not in FORMATS:
        raise ModelLoadError(f"{path}: format must be one of {FORMATS}, got {card['format']!r}")
    return dict(card)


@dataclass(frozen=True)
class LoadedModel:
    model: Any
    name: str
    card: dict[str, Any]
    checkpoint: Path
    checkpoint_sha256: str


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_model(name_or_path: str, base: Path | None = None) -> Any:
    return load(name_or_path, base).model


_LOADED: dict[tuple[str, str, str], LoadedModel] = {}
"""Models loaded in this process, keyed by directory, card text and checkpoint hash: the files of a
suite share one model, and a changed card or checkpoint is loaded afresh. Nothing writes to a loaded model."""


def load(name_or_path: str, base: Path | None = None) -> LoadedModel:
    model_dir = resolve_model_dir(name_or_path, base)
    card = load_zoo_card(str(model_dir))
    ckpt = model_dir / card["checkpoint"]
    if not ckpt.is_file():
        raise ModelLoadError(f"{model_dir / CARD_NAME}: checkpoint {ckpt} does not exist")
    key = (str(model_dir.resolve()), (model_dir / CARD_NAME).read_text(), sha256_file(ckpt))
    if key not in _LOADED:
        _LOADED[key] = _build(model_dir, card, ckpt, key[2])
    return _LOADED[key]


def _build(model_dir: Path, card: dict[str, Any], ckpt: Path, digest: str) -> LoadedModel:
    try:
        model = build_bridge(card["config"])
    except (TypeError, ValueError) as err:
        raise ModelLoadError(f"{model_dir / CARD_NAME}: bad config: {err}") from None
    state = _read_state_dict(ckpt, card, model.cfg)
    _load_strict(model, state, ckpt)
    model.train(False)  # inference mode: no dropout; never Python eval
    for param in model.parameters():
        param.requires_grad_(False)
    return LoadedModel(model, card.get("name", model_dir.name), card, ckpt, digest)


def _read_state_dict(ckpt: Path, card: dict[str, Any], cfg: Any) -> dict[str, torch.Tensor]:
    try:
        if ckpt.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(ckpt))
        else:
            state = torch.load(ckpt, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any reader failure is a load error for the user
        raise ModelLoadError(f"{ckpt}: cannot read checkpoint: {err}") from None
    if not isinstance(state, dict):
        raise ModelLoadError(f"{ckpt}: expected a state dict, got {type(state).__name__}")
    if card["format"] == "hooked-transformer":
        from transformer_lens.utilities.tl_checkpoint_conversion import convert_tl_checkpoint

        try:
            state = convert_tl_checkpoint(state, cfg)
        except (ValueError, RuntimeError) as err:
            raise ModelLoadError(f"{ckpt}: HookedTransformer checkpoint does not match its config: {err}") from None
    return state


def _load_strict(model: Any, state: dict[str, torch.Tensor], ckpt: Path) -> None:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong_shape = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs config {tuple(expected[k].shape)}"
        for k in sorted(set(state) & set(expected))
        if state[k].shape != expected[k].shape
    ]
    problems = []
    if missing:
        problems.append(f"missing from checkpoint: {', '.join(missing)}")
    if unexpected:
        problems.append(f"not in the config's model: {', '.join(unexpected)}")
    if wrong_shape:
        problems.append("shape mismatch: " + "; ".join(wrong_shape))
    if problems:
        hint = ""
        if any(k.startswith("ln_final") for k in missing + unexpected):
            hint = " (a final-norm mismatch: set config.final_norm to 'none' or 'same')"
        raise ModelLoadError(
            f"{ckpt}: checkpoint does not match its config{hint}: " + "; ".join(problems)
        )
    model.load_state_dict(state, strict=True)
