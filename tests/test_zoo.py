"""Zoo loading: by name and path, legacy HookedTransformer dicts, and clear mismatch errors."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from circuitcheck.errors import ModelLoadError
from circuitcheck.zoo.load import load, zoo_names, zoo_root
from circuitcheck.zoo.trigram_eval import evaluate_trigram_completion


def test_zoo_lists_the_trigram_models():
    assert {"trigram", "trigram-attn-only"} <= set(zoo_names())


def test_load_by_name_and_by_path_agree(trigram):
    by_path = load(str(zoo_root() / "trigram"))
    tokens = torch.randint(0, 75, (2, 50))
    with torch.no_grad():
        assert torch.equal(trigram.model(tokens), by_path.model(tokens))
    assert trigram.checkpoint_sha256 == by_path.checkpoint_sha256


def test_card_accuracy_is_what_the_checkpoint_does(trigram):
    card = trigram.card
    with torch.no_grad():
        measured = evaluate_trigram_completion(trigram.model, torch.tensor(card["task"]["trigrams"]), card["task"])
    assert measured["trigram_accuracy"] == pytest.approx(card["evaluation"]["trigram_accuracy"], abs=1e-4)
    # a regression floor; the card and models/README.md give the real figure
    assert measured["trigram_accuracy"] >= 0.85


def test_trigram_model_has_no_final_norm(trigram):
    model = trigram.model
    tokens = torch.randint(0, 75, (3, 50))
    with torch.no_grad():
        logits, cache = model.run_with_cache(tokens)
    direct = cache["blocks.0.hook_resid_post"] @ model.W_U + model.b_U
    assert torch.allclose(logits, direct, atol=1e-5)


def to_hooked_transformer(state: dict[str, torch.Tensor], n_heads: int) -> dict[str, torch.Tensor]:
    """The inverse of TL's checkpoint conversion, written independently for the test."""
    out: dict[str, torch.Tensor] = {}
    for key, t in state.items():
        base, _, leaf = key.rpartition(".")
        if base.endswith(("attn.q", "attn.k", "attn.v")):
            stem, letter = base.rsplit(".", 1)
            name = letter.upper()
            if leaf == "weight":
                out[f"{stem}.W_{name}"] = t.reshape(n_heads, -1, t.shape[1]).transpose(1, 2).contiguous()
            else:
                out[f"{stem}.b_{name}"] = t.reshape(n_heads, -1)
        elif base.endswith("attn.o"):
            stem = base[: -len(".o")]
            if leaf == "weight":
                out[f"{stem}.W_O"] = t.T.reshape(n_heads, -1, t.shape[0]).contiguous()
            else:
                out[f"{stem}.b_O"] = t
        elif base.endswith(("mlp.in", "mlp.out")):
            stem, which = base.rsplit(".", 1)
            out[f"{stem}.{'W' if leaf == 'weight' else 'b'}_{which}"] = t.T.contiguous() if leaf == "weight" else t
        elif base == "embed":
            out["embed.W_E"] = t
        elif base == "pos_embed":
            out["pos_embed.W_pos"] = t
        elif base == "unembed":
            out["unembed.W_U" if leaf == "weight" else "unembed.b_U"] = t.T.contiguous() if leaf == "weight" else t
        else:
            out[f"{base}.{'w' if leaf == 'weight' else 'b'}"] = t
    out["blocks.0.attn.mask"] = torch.ones(50, 50).tril().bool()
    return out


def test_legacy_hooked_transformer_checkpoint_loads(trigram, tmp_path):
    src = zoo_root() / "trigram"
    legacy = to_hooked_transformer(load_file(str(src / "model.safetensors")), n_heads=1)
    torch.save(legacy, tmp_path / "model.pt")
    card = json.loads((src / "card.json").read_text()) | {"format": "hooked-transformer", "checkpoint": "model.pt"}
    (tmp_path / "card.json").write_text(json.dumps(card))
    converted = load(str(tmp_path))
    tokens = torch.randint(0, 75, (4, 50))
    with torch.no_grad():
        assert torch.allclose(converted.model(tokens), trigram.model(tokens), atol=1e-5)


def copy_model(tmp_path, **config_changes):
    src = zoo_root() / "trigram"
    shutil.copy(src / "model.safetensors", tmp_path / "model.safetensors")
    card = json.loads((src / "card.json").read_text())
    card["config"].update(config_changes)
    (tmp_path / "card.json").write_text(json.dumps(card))
    return tmp_path


def test_config_mismatch_is_a_clear_error(tmp_path):
    with pytest.raises(
        ModelLoadError, match=r"shape mismatch: .*blocks.0.mlp.in.weight: checkpoint \(20, 32\) vs config \(24, 32\)"
    ):
        load(str(copy_model(tmp_path, d_mlp=24)))


def test_final_norm_mismatch_suggests_the_fix(tmp_path):
    with pytest.raises(ModelLoadError, match="final-norm mismatch: set config.final_norm"):
        load(str(copy_model(tmp_path, final_norm="same")))


def test_unknown_config_key_is_rejected(tmp_path):
    with pytest.raises(ModelLoadError, match=r"unknown model config keys \['d_modle'\]"):
        load(str(copy_model(tmp_path, d_modle=3)))


class Evil:
    """Any pickled class: weights_only loading must refuse to construct it."""


def test_pickled_objects_are_refused(tmp_path):
    torch.save({"x": Evil()}, tmp_path / "model.pt")
    card = json.loads((zoo_root() / "trigram" / "card.json").read_text()) | {"checkpoint": "model.pt"}
    (tmp_path / "card.json").write_text(json.dumps(card))
    with pytest.raises(ModelLoadError, match="cannot read checkpoint"):
        load(str(tmp_path))


def test_safetensors_round_trip(trigram, tmp_path):
    state = {k: v.contiguous() for k, v in trigram.model.state_dict().items()}
    save_file(state, str(tmp_path / "x.safetensors"))
    assert set(load_file(str(tmp_path / "x.safetensors"))) == set(state)
