"""Hugging Face model folders as models: a ``save_pretrained`` folder, or ``hf:<name>`` from the local HF cache.

A folder is an HF model when it holds ``config.json`` (and no ``card.json``: a zoo card wins). It loads through
``TransformerBridge.boot_transformers``, and every load is checked against ``transformers``' own forward
(:mod:`circuitcheck.zoo.bridge_check`).

What a loaded HF model records:

- ``checkpoint``: its first weight file (sorted by name), so ``checkpoint.parent`` is the folder;
- ``checkpoint_sha256``: SHA-256 over every weight file, sorted by name, each as its name, a NUL byte and its
  bytes (:func:`weights_sha256`): changing any shard changes it;
- ``card``: made from the bridge's config (:func:`hf_card`), with ``format: "hf"`` and an empty ``task``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from circuitcheck.errors import ModelLoadError
from circuitcheck.zoo.build import frozen
from circuitcheck.zoo.json_file import read_json_object

HF_PREFIX = "hf:"
CONFIG_NAME = "config.json"
WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin")
"""Weight files, in order of preference: a folder with safetensors shards is never read through pickle."""
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "tokenizer.model")
CARD_CONFIG_KEYS = (
    "n_layers", "n_heads", "d_model", "d_head", "d_mlp", "d_vocab", "n_ctx", "positional_embedding_type",
    "attn_only", "normalization_type", "act_fn", "parallel_attn_mlp",
)
"""The bridge config fields copied into an HF model's card (what the later stages and reports read)."""


def is_hf_folder(folder: Path) -> bool:
    return (folder / CONFIG_NAME).is_file() and not (folder / "card.json").is_file()


def hf_cache_dir() -> str:
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def resolve_hf(name_or_path: str, folder: Path) -> Path | None:
    """The HF folder ``name_or_path`` names: ``hf:<name>`` from the local cache (or ``hf:<path>`` to a folder),
    or a path relative to ``folder`` that holds ``config.json``; None when it names no HF model."""
    if name_or_path.startswith(HF_PREFIX):
        name = name_or_path[len(HF_PREFIX):]
        local = Path(name) if Path(name).is_absolute() else folder / name
        if is_hf_folder(local):
            return local
        return cached_snapshot(name)
    raw = Path(name_or_path)
    cand = raw if raw.is_absolute() else folder / raw
    if cand.is_file() and cand.name == CONFIG_NAME:
        cand = cand.parent
    return cand if is_hf_folder(cand) else None


def cached_snapshot(name: str) -> Path:
    """The folder of ``name`` (``gpt2``, ``EleutherAI/pythia-70m``) in the local HF cache; never the network."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError

    try:
        return Path(snapshot_download(name, local_files_only=True))
    except HFValidationError as err:
        raise ModelLoadError(
            f"hf:{name}: not a Hugging Face repository name ({err})\n"
            "  fix: write hf:<owner>/<name> (hf:EleutherAI/pythia-70m) or hf:<name> (hf:gpt2)"
        ) from None
    except Exception:  # noqa: BLE001 - LocalEntryNotFoundError, or any offline lookup failure: not in the cache
        raise ModelLoadError(
            f"hf:{name}: not in the local Hugging Face cache ({hf_cache_dir()}); circuitcheck never downloads\n"
            f"  fix: on a machine with internet run `huggingface-cli download {name}` (or set HF_HOME / HF_HUB_CACHE "
            "to the cache that holds it), or give the path of a save_pretrained folder"
        ) from None


def weight_files(folder: Path) -> list[Path]:
    for pattern in WEIGHT_PATTERNS:
        found = sorted(p for p in folder.glob(pattern) if p.is_file())
        if found:
            return found
    raise ModelLoadError(
        f"{folder}: has {CONFIG_NAME} but no weights (no *.safetensors or pytorch_model*.bin)\n"
        "  fix: save the model with model.save_pretrained(folder), which writes model.safetensors next to config.json"
    )


def weights_sha256(files: list[Path]) -> str:
    """SHA-256 over ``files`` sorted by name: each file's name, a NUL byte, then its bytes."""
    digest = hashlib.sha256()
    for path in sorted(files, key=lambda p: p.name):
        digest.update(path.name.encode() + b"\0")
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def read_hf_config(folder: Path) -> dict[str, Any]:
    return read_json_object(folder / CONFIG_NAME, "model config")


def supported_architectures() -> list[str]:
    """The causal language models TransformerLens's bridge has an adapter for."""
    from transformer_lens.factories.architecture_adapter_factory import SUPPORTED_ARCHITECTURES

    return sorted(a for a in SUPPORTED_ARCHITECTURES if a.endswith(("ForCausalLM", "LMHeadModel")))


def check_architecture(folder: Path) -> None:
    """Refuse, before any weight is read, a config whose architecture the bridge has no adapter for."""
    from transformer_lens.model_bridge.sources._hf_format import determine_architecture_from_hf_config
    from transformers import AutoConfig

    try:  # transformers raises ValueError/KeyError for a model_type it does not know; TL, ValueError for one it lacks
        determine_architecture_from_hf_config(AutoConfig.from_pretrained(str(folder)))
        return
    except (ValueError, KeyError, OSError):
        pass
    config = read_hf_config(folder)
    named = config.get("architectures") or [f"model_type {config.get('model_type')!r}"]
    raise ModelLoadError(
        f"{folder / CONFIG_NAME}: architecture {', '.join(map(str, named))} is not supported by TransformerLens's "
        f"bridge\n  fix: use a model of a supported architecture: {', '.join(supported_architectures())}"
    )


def hf_tokenizer(folder: Path) -> Any:
    """The folder's tokenizer (``transformers.AutoTokenizer``); None when the folder has no tokenizer files."""
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        return None
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(folder))
    except Exception as err:  # noqa: BLE001 - a broken tokenizer file is a load error, whatever transformers raises
        raise ModelLoadError(
            f"{folder}: cannot load its tokenizer: {str(err).splitlines()[0] if str(err) else type(err).__name__}\n"
            "  fix: save it with tokenizer.save_pretrained(folder), or remove the broken tokenizer files"
        ) from None


def require_tokenizer(loaded: Any, why: str) -> Any:
    """``loaded``'s tokenizer; a :class:`ModelLoadError` saying what needs it (``why``) when it has none."""
    if loaded.tokenizer is not None:
        return loaded.tokenizer
    where = (f"its folder {loaded.checkpoint.parent} has none of {', '.join(TOKENIZER_FILES)}"
             if loaded.source == "hf" else "zoo models have token ids, no tokenizer")
    raise ModelLoadError(
        f"{loaded.name}: {why} needs the model's tokenizer, and {where}\n"
        "  fix: save the tokenizer next to the model (tokenizer.save_pretrained(folder)), or use token ids "
        "(a dataset of kind 'file')"
    )


def hf_card(name: str, bridge_cfg: Any, hf_config: dict[str, Any], checkpoint: Path) -> dict[str, Any]:
    """A card for an HF model, shaped like a zoo card: what later stages read of a model (its shape, no task)."""
    config: dict[str, Any] = {}
    for key in CARD_CONFIG_KEYS:
        value = getattr(bridge_cfg, key, None)
        config[key] = value if value is None or isinstance(value, bool | int | float | str) else str(value)
    if config.get("parallel_attn_mlp") is None:
        config["parallel_attn_mlp"] = bool(hf_config.get("use_parallel_residual", False))
    return {"name": name, "config": config, "task": {}, "format": "hf", "checkpoint": checkpoint.name,
            "hf_model_type": hf_config.get("model_type")}


@contextmanager
def quiet_transformers() -> Iterator[None]:
    """No "Loading weights" progress bars from transformers while circuitcheck loads (its own tracker reports)."""
    from transformers.utils import logging as hf_logging

    was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_on:
            hf_logging.enable_progress_bar()


def boot(folder: Path, device: str, dtype: str) -> Any:
    """The bridge over ``folder``'s model, in inference mode with no gradients."""
    import torch
    from transformer_lens.model_bridge import TransformerBridge

    try:
        bridge = TransformerBridge.boot_transformers(str(folder), device=device, dtype=getattr(torch, dtype))
    except Exception as err:  # noqa: BLE001 - the folder is user input; whatever it breaks is a load error
        raise ModelLoadError(
            f"{folder}: TransformerLens cannot load this model: {str(err).splitlines()[0] if str(err) else err!r}\n"
            "  fix: check the folder loads with transformers.AutoModelForCausalLM.from_pretrained"
        ) from None
    frozen(bridge)
    return bridge


def reinitialised_bridge(folder: Path, seed: int, device: str, dtype: str) -> Any:
    """``folder``'s architecture with the architecture's own random init (seeded), for the null-model control."""
    import torch
    from transformer_lens.model_bridge import TransformerBridge

    torch.manual_seed(seed)
    bridge = TransformerBridge.boot_transformers(str(folder), load_weights=False)
    bridge.to(device, print_details=False)
    bridge.to(getattr(torch, dtype), print_details=False)
    frozen(bridge)
    return bridge
