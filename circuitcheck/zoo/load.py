"""Load a model by zoo name or path: TL-native safetensors, or legacy HookedTransformer dicts.

A model directory holds ``card.json`` (config + checkpoint file name + facts) and the
checkpoint. Only safetensors or ``torch.load(weights_only=True)`` are ever used.

Relative paths resolve against a stated folder, and every error says which: a ``--model`` on
the command line against the current directory, a ``model:`` in a hypothesis file against that
file's folder, and a card's ``checkpoint`` against the card's own folder, which it must not leave.

A folder with ``config.json`` and no ``card.json`` is a Hugging Face model, as is ``hf:<name>`` (from the local
HF cache): :mod:`circuitcheck.zoo.hf`. Device, dtype and ``trust_bridge`` come from
:func:`circuitcheck.zoo.options.loading`.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from circuitcheck.errors import ModelLoadError
from circuitcheck.tensor_files import PLAIN_TENSORS_FIX, UnreadableTensors, read_tensors
from circuitcheck.zoo import hf
from circuitcheck.zoo.bridge_check import bridge_check, mismatch_message
from circuitcheck.zoo.build import build_bridge, frozen
from circuitcheck.zoo.json_file import read_json_object
from circuitcheck.zoo.options import LoadOptions, current_options

CARD_NAME = "card.json"
FORMATS = ("tl-native", "hooked-transformer")
CURRENT_DIRECTORY = "the current directory"
FILE_FOLDER = "the hypothesis file's folder"
CARD_PATHS = ("checkpoint",)
"""The card keys that name files; each resolves against the card's folder and must stay inside it."""
SHOWN = 3
"""How many mismatching parameters a load error lists before counting the rest."""


def zoo_root() -> Path:
    """``$CIRCUITCHECK_ZOO`` or the repository's ``models/`` folder."""
    env = os.environ.get("CIRCUITCHECK_ZOO")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "models"


def zoo_names() -> list[str]:
    root = zoo_root()
    if not root.is_dir():
        return []
    return sorted(p.parent.name for p in root.glob(f"*/{CARD_NAME}"))


def _anchor(base: Path | None, base_is: str | None) -> tuple[Path, str]:
    """The folder a relative model path resolves against, and how errors name it."""
    cwd = Path.cwd()
    if base is None:
        return cwd, CURRENT_DIRECTORY
    if base_is is None:  # callers that pass the current directory need not say so
        base_is = CURRENT_DIRECTORY if base.resolve() == cwd.resolve() else FILE_FOLDER
    return base, base_is


def resolve_model_dir(name_or_path: str, base: Path | None = None, base_is: str | None = None) -> Path:
    """A zoo name, or a directory/card path relative to ``base`` (default: the current directory).

    ``base_is`` names ``base`` in errors ("the hypothesis file's folder"). A Hugging Face folder (or ``hf:<name>``,
    from the local cache) resolves to its folder.
    """
    folder, label = _anchor(base, base_is)
    hf_folder = _hf_folder(name_or_path, folder)
    if hf_folder is not None:
        return hf_folder
    is_name = "/" not in name_or_path and not name_or_path.startswith(".")
    candidates = [zoo_root() / name_or_path] if is_name else []
    raw = Path(name_or_path)
    as_path = raw if raw.is_absolute() else folder / raw
    candidates.append(as_path)
    for cand in candidates:
        if cand.is_file() and cand.name == CARD_NAME:
            return cand.parent
        if (cand / CARD_NAME).is_file():
            return cand
    known = ", ".join(zoo_names()) or "none found"
    where = "" if raw.is_absolute() else f" (resolved against {label} {folder})"
    raise ModelLoadError(
        f"no model {name_or_path!r}: {'not a zoo name, and ' if is_name else ''}{os.path.normpath(as_path)}{where} "
        f"holds no {CARD_NAME} and no {hf.CONFIG_NAME}. Zoo models: {known}.\n"
        f"  fix: give a zoo name, a folder with {CARD_NAME}, a Hugging Face save_pretrained folder "
        f"({hf.CONFIG_NAME} + weights), or hf:<name> for a model in the local Hugging Face cache"
    )


def _hf_folder(name_or_path: str, folder: Path) -> Path | None:
    """The Hugging Face folder ``name_or_path`` names, if any; a zoo name keeps its meaning (a local folder of
    the same name holding config.json does not shadow it)."""
    if "/" not in name_or_path and (zoo_root() / name_or_path / CARD_NAME).is_file():
        return None
    return hf.resolve_hf(name_or_path, folder)


def card_file(model_dir: Path, card: dict[str, Any], key: str) -> Path:
    """A path the card names, resolved against the card's folder; refused if it leaves that folder
    (an absolute path, ``..``, or a link out), so a card cannot make us read /etc/passwd."""
    value = card[key]
    folder = model_dir.resolve()
    try:
        target = (folder / value).resolve()
    except (ValueError, OSError) as err:  # a NUL byte, a link loop
        raise ModelLoadError(f"{model_dir / CARD_NAME}: {key} {value!r:.80} is not a usable path: {err}") from None
    # ".." is refused even when it comes back in: a card's paths name files in its folder, nothing else
    why = (
        "is an absolute path" if Path(value).is_absolute()
        else "goes through '..'" if ".." in Path(value).parts
        else f"resolves to {target}, outside the folder (through a link)" if not target.is_relative_to(folder)
        else ""
    )
    if why:
        raise ModelLoadError(
            f"{model_dir / CARD_NAME}: {key} {value!r} {why}; a card's paths resolve against its own folder "
            f"{folder} and must stay inside it\n"
            f"  fix: put the file in {folder} and give its name, e.g. \"{key}\": \"model.safetensors\""
        )
    return target


def load_zoo_card(name_or_path: str, base: Path | None = None, base_is: str | None = None) -> dict[str, Any]:
    model_dir = resolve_model_dir(name_or_path, base, base_is)
    path = model_dir / CARD_NAME
    card = read_json_object(path, "model card")
    expected = {"config": dict, "checkpoint": str, "format": str, "task": dict, "name": str}
    for key in ("config", "checkpoint"):
        if key not in card:
            raise ModelLoadError(f"{path}: model card lacks {key!r}")
    for key, kind in expected.items():
        if key in card and not isinstance(card[key], kind):
            raise ModelLoadError(
                f"{path}: {key} must be a JSON {'object' if kind is dict else 'string'}, got {card[key]!r:.60}"
            )
    card.setdefault("format", "tl-native")
    if card["format"] not in FORMATS:
        raise ModelLoadError(f"{path}: format must be one of {FORMATS}, got {card['format']!r}")
    for key in CARD_PATHS:
        card_file(model_dir, card, key)
    return dict(card)


@dataclass(frozen=True)
class LoadedModel:
    model: Any
    name: str
    card: dict[str, Any]
    checkpoint: Path
    checkpoint_sha256: str
    tokenizer: Any = None
    """The model's tokenizer (an HF folder's ``AutoTokenizer``); None when it has none (zoo models)."""
    device: str = "cpu"
    dtype: str = "float32"
    bridge_check: dict[str, Any] | None = None
    """An HF model's probe against its own forward (:mod:`circuitcheck.zoo.bridge_check`); None for zoo models."""
    source: str = "zoo"
    """``zoo`` (a card folder) or ``hf`` (a Hugging Face folder)."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_model(name_or_path: str, base: Path | None = None) -> Any:
    return load(name_or_path, base).model


_LOADED: dict[tuple[str, str, str, str, str], LoadedModel] = {}
"""Models loaded in this process, keyed by directory, card (or HF config) text, checkpoint (or weight files')
hash, device and dtype: the files of a suite share one model, and a changed card or checkpoint is loaded afresh.
Nothing writes to a loaded model."""


def checkpoint_of(model_dir: Path, card: dict[str, Any]) -> Path:
    """The card's checkpoint file, inside the model folder and present."""
    ckpt = card_file(model_dir, card, "checkpoint")
    if not ckpt.is_file():
        raise ModelLoadError(
            f"{model_dir / CARD_NAME}: checkpoint {card['checkpoint']!r} does not exist "
            f"(resolved against the model folder {model_dir.resolve()} to {ckpt})"
        )
    return ckpt


def load(
    name_or_path: str, base: Path | None = None, base_is: str | None = None, options: LoadOptions | None = None
) -> LoadedModel:
    """A zoo name or card folder, a Hugging Face folder, or ``hf:<name>``; loaded with ``options`` (default:
    those of the enclosing :func:`circuitcheck.zoo.options.loading`, else CPU float32)."""
    options = current_options() if options is None else options.checked()
    hf_folder = _hf_folder(name_or_path, _anchor(base, base_is)[0])
    if hf_folder is not None:
        return _load_hf(name_or_path, hf_folder, options)
    model_dir = resolve_model_dir(name_or_path, base, base_is)
    card = load_zoo_card(str(model_dir))
    ckpt = checkpoint_of(model_dir, card)
    try:
        key = (str(model_dir.resolve()), (model_dir / CARD_NAME).read_text(), sha256_file(ckpt),
               options.device, options.dtype)
    except OSError as err:  # unreadable (permissions, a directory named like the file)
        raise ModelLoadError(f"{err.filename or ckpt}: cannot read: {err.strerror or err}") from None
    if key not in _LOADED:
        _LOADED[key] = _placed(_build(model_dir, card, ckpt, key[2]), options)
    return _LOADED[key]


def _placed(loaded: LoadedModel, options: LoadOptions) -> LoadedModel:
    """A zoo model moved to ``options``' device and dtype (built on the CPU in float32)."""
    if (options.device, options.dtype) == ("cpu", "float32"):
        return loaded
    loaded.model.to(options.device, print_details=False)
    loaded.model.to(getattr(torch, options.dtype), print_details=False)
    return replace(loaded, device=options.device, dtype=options.dtype)


def _load_hf(name_or_path: str, folder: Path, options: LoadOptions) -> LoadedModel:
    hf_config = hf.read_hf_config(folder)
    hf.check_architecture(folder)  # before the weights: an unsupported model is refused whatever its files
    weights = hf.weight_files(folder)
    try:
        key = (str(folder.resolve()), (folder / hf.CONFIG_NAME).read_text(), hf.weights_sha256(weights),
               options.device, options.dtype)
    except OSError as err:
        raise ModelLoadError(f"{err.filename or folder}: cannot read: {err.strerror or err}") from None
    if key not in _LOADED:
        with hf.quiet_transformers():
            bridge = hf.boot(folder, options.device, options.dtype)
            check = bridge_check(bridge, folder, hf_config, options.device, options.dtype, options.trust_bridge)
        name = name_or_path if name_or_path.startswith(hf.HF_PREFIX) else folder.name
        _LOADED[key] = LoadedModel(
            bridge, name, hf.hf_card(name, bridge.cfg, hf_config, weights[0]), weights[0], key[2],
            tokenizer=hf.hf_tokenizer(folder), device=options.device, dtype=options.dtype, bridge_check=check,
            source="hf",
        )
    loaded = _LOADED[key]
    check = loaded.bridge_check or {}
    if not check.get("passed", True) and not options.trust_bridge:  # loaded earlier with --trust-bridge
        raise ModelLoadError(mismatch_message(folder, check))
    return loaded


def _build(model_dir: Path, card: dict[str, Any], ckpt: Path, digest: str) -> LoadedModel:
    try:
        model = build_bridge(card["config"])
    except Exception as err:  # noqa: BLE001 - the config is user input; whatever it breaks is a load error
        raise ModelLoadError(f"{model_dir / CARD_NAME}: bad config: {err}") from None
    state = _read_state_dict(ckpt, card, model.cfg)
    _check_finite(state, ckpt)
    _load_strict(model, state, ckpt, model_dir / CARD_NAME)
    frozen(model)
    return LoadedModel(model, card.get("name", model_dir.name), card, ckpt, digest)


def _read_state_dict(ckpt: Path, card: dict[str, Any], cfg: Any) -> dict[str, torch.Tensor]:
    try:
        state = read_tensors(ckpt)
    except UnreadableTensors as err:
        raise ModelLoadError(f"{ckpt}: cannot read checkpoint: {err}\n  fix: {PLAIN_TENSORS_FIX}") from None
    if not isinstance(state, dict):
        raise ModelLoadError(f"{ckpt}: expected a state dict, got {type(state).__name__}\n  fix: {PLAIN_TENSORS_FIX}")
    not_tensors = sorted(str(k) for k, v in state.items() if not isinstance(v, torch.Tensor))
    if not_tensors:
        raise ModelLoadError(
            f"{ckpt}: expected a dict of tensors; {not_tensors[0]!r:.80} is not a tensor\n  fix: {PLAIN_TENSORS_FIX}"
        )
    if card["format"] == "hooked-transformer":
        from transformer_lens.utilities.tl_checkpoint_conversion import convert_tl_checkpoint

        try:
            state = convert_tl_checkpoint(state, cfg)
        except (ValueError, RuntimeError, KeyError) as err:
            raise ModelLoadError(f"{ckpt}: HookedTransformer checkpoint does not match its config: {err}") from None
    return state


def _check_finite(state: dict[str, torch.Tensor], ckpt: Path) -> None:
    """NaN or inf weights make every result meaningless; say which file and parameter, before any run."""
    for name in sorted(state):
        t = state[name]
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            n_bad = int((~torch.isfinite(t)).sum())
            raise ModelLoadError(
                f"{ckpt}: parameter {name!r} has {n_bad} non-finite value(s) (NaN or inf); the checkpoint is corrupt "
                "or its training diverged\n  fix: use a checkpoint saved before the divergence, or retrain"
            )


def _listed(items: list[str]) -> str:
    more = f" (and {len(items) - SHOWN} more)" if len(items) > SHOWN else ""
    return ", ".join(items[:SHOWN]) + more


def _load_strict(model: Any, state: dict[str, torch.Tensor], ckpt: Path, card_path: Path) -> None:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong_shape = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs config {tuple(expected[k].shape)}"
        for k in sorted(set(state) & set(expected))
        if state[k].shape != expected[k].shape
    ]
    problems = []
    if wrong_shape:
        problems.append("shape mismatch: " + _listed(wrong_shape))
    if missing:
        problems.append(f"missing from checkpoint: {_listed(missing)}")
    if unexpected:
        problems.append(f"not in the config's model: {_listed(unexpected)}")
    if not problems:
        model.load_state_dict(state, strict=True)
        return
    if not wrong_shape and all(k.startswith("ln_final") for k in missing + unexpected):
        raise ModelLoadError(
            f"{ckpt}: checkpoint does not match its config (a final-norm mismatch: set config.final_norm to "
            f"'none' or 'same' in {card_path}): " + "; ".join(problems)
        )
    raise ModelLoadError(
        f"{ckpt}: checkpoint does not match the architecture in {card_path} (a checkpoint of a different model?): "
        + "; ".join(problems)
        + (
            "\n  fix: point the card's checkpoint at weights trained with this config, "
            "or give the config they were trained with"
        )
    )


def reinitialised(loaded: LoadedModel, seed: int) -> LoadedModel:
    """A copy of ``loaded``'s architecture with freshly initialised weights (TransformerLens's native init,
    seeded ``seed``), in inference mode: one null model of the null-model control. The card and checkpoint
    stay those of the trained model (the copy is named ``<name>@null<seed>``). A model whose card config
    cannot be rebuilt this way is a :class:`ModelLoadError`, never a silent skip."""
    if loaded.source == "hf":
        model = hf.reinitialised_bridge(loaded.checkpoint.parent, seed, loaded.device, loaded.dtype)
        return replace(loaded, model=model, name=f"{loaded.name}@null{seed}", bridge_check=None)
    config = loaded.card.get("config")
    if not isinstance(config, dict):
        raise ModelLoadError(
            f"{loaded.name}: cannot re-initialise the model for the null-model control: its card has no config "
            "to rebuild the architecture from\n  fix: run without --controls / 'controls:'"
        )
    try:
        model = build_bridge({**config, "seed": seed})
    except Exception as err:  # noqa: BLE001 - whatever the config breaks, say it cannot be re-initialised
        raise ModelLoadError(
            f"{loaded.name}: cannot re-initialise the model for the null-model control: {err}\n"
            "  fix: run without --controls / 'controls:'"
        ) from None
    frozen(model)
    placed = _placed(LoadedModel(model, "", {}, loaded.checkpoint, ""), LoadOptions(loaded.device, loaded.dtype))
    return replace(loaded, model=placed.model, name=f"{loaded.name}@null{seed}")
