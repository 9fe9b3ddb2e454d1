"""Hugging Face folders as models: loading (``model:``, ``--model``, ``hf:``), the bridge check against the model's
own forward, the loading errors, dtype, and engine estimates checked against plain TransformerLens hook runs."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer
from tokenizers.models import WordLevel
from tokenizers.pre_tokenizers import Whitespace
from transformers import (
    BioGptConfig,
    GPT2Config,
    GPT2LMHeadModel,
    GPTNeoXConfig,
    GPTNeoXForCausalLM,
    PreTrainedTokenizerFast,
)

from circuitcheck.api import check
from circuitcheck.cli import main
from circuitcheck.errors import ModelLoadError
from circuitcheck.plan.circuits import ModelShape
from circuitcheck.plan.compile import compile_file
from circuitcheck.plan.components import model_components
from circuitcheck.spec.components import PosEmbed
from circuitcheck.spec.vacuity import card_facts
from circuitcheck.zoo import hf
from circuitcheck.zoo.load import load
from circuitcheck.zoo.options import LoadOptions

VOCAB, SEQ, N_SEQS = 50, 16, 12
WEIGHT_SCALE = 8.0
"""Random init (std 0.02) gives logits near 0, where any two computations agree; scaled weights make the
logits O(1-10) so that the bridge check and the estimates compare something."""


def _scaled(model: torch.nn.Module) -> torch.nn.Module:
    torch.manual_seed(0)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "ln" not in name and "norm" not in name:
                param.mul_(WEIGHT_SCALE)
    return model.eval()


def _save_tokenizer(folder: Path) -> None:
    words = {f"w{i}": i for i in range(VOCAB - 1)} | {"[UNK]": VOCAB - 1}
    tok = Tokenizer(WordLevel(words, unk_token="[UNK]"))
    tok.pre_tokenizer = Whitespace()  # type: ignore[assignment]
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]").save_pretrained(folder)


def _gpt2(**extra: object) -> torch.nn.Module:
    torch.manual_seed(1)
    cfg = GPT2Config(n_layer=2, n_head=2, n_embd=32, vocab_size=VOCAB, n_positions=32, **extra)
    return _scaled(GPT2LMHeadModel(cfg))


def _neox() -> torch.nn.Module:
    torch.manual_seed(2)
    cfg = GPTNeoXConfig(num_hidden_layers=2, num_attention_heads=2, hidden_size=32, intermediate_size=64,
                        vocab_size=VOCAB, max_position_embeddings=32)
    return _scaled(GPTNeoXForCausalLM(cfg))


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hf")
    made = {"gpt2": _gpt2(), "neox": _neox(), "unscaled": _gpt2(scale_attn_weights=False)}
    for name, model in made.items():
        model.save_pretrained(root / name)
    _save_tokenizer(root / "gpt2")
    gen = torch.Generator().manual_seed(0)
    half = torch.randint(0, VOCAB - 1, (N_SEQS, SEQ // 2), generator=gen)
    torch.save({"tokens": torch.cat([half, half], 1)}, root / "tokens.pt")
    return {**{k: root / k for k in made}, "root": root}


HYPOTHESIS = """\
version: 1
name: {name}
model: {model}
dataset: {{kind: file, path: tokens.pt}}
positions:
  second: {{range: [8, 15]}}
claims:
  - id: abl
    statement: mean-ablating head 1.0 and mlp0 lowers the log-probability of the repeated tokens
    kind: ablation
    mode: necessity
    components: ["1.0", "mlp0"]
    method: mean
    positions: second
    metric: logprob
    effect: absolute_drop
    threshold: {{at_least: -1000.0}}
  - id: patch
    statement: clean head 1.0 and mlp0 outputs at the second copy restore the clean log-probability
    kind: activation_patching
    corruption: {{scheme: resample_tokens, positions: second, seed: 5}}
    patch: [blocks.1.attn.hook_z, blocks.0.hook_mlp_out]
    patch_at: second
    positions: second
    metric: logprob
    threshold: {{at_most: 1000.0}}
"""


def _hypothesis(folders: dict[str, Path], arch: str, model: str | None = None) -> Path:
    path = folders["root"] / f"{arch}.yaml"
    path.write_text(HYPOTHESIS.format(name=f"hf-{arch}", model=model or arch))
    return path


# --- an independent computation: plain TransformerLens hooks on the same bridge --------------------------------


def _mean_logprob(model: object, tokens: torch.Tensor, hooks: list, targets: torch.Tensor) -> float:
    with torch.no_grad():
        logits = model.run_with_hooks(tokens, fwd_hooks=hooks).float()  # type: ignore[attr-defined]
    logprobs = logits[:, 8:15].log_softmax(-1).gather(-1, targets[:, 8:15, None]).squeeze(-1)
    return float(logprobs.mean())


def _reference(model: object, tokens: torch.Tensor, corrupted: torch.Tensor) -> tuple[float, float]:
    """(ablation drop, fraction recovered) of the hypothesis, from hooks written here."""
    targets = torch.cat([tokens[:, 1:], tokens[:, -1:]], 1)
    with torch.no_grad():
        _, clean_cache = model.run_with_cache(tokens)  # type: ignore[attr-defined]
    z, mlp = clean_cache["blocks.1.attn.hook_z"], clean_cache["blocks.0.hook_mlp_out"]

    def mean_head(act: torch.Tensor, hook: object) -> torch.Tensor:
        act = act.clone()
        act[:, :, 0] = z[:, :, 0].mean(0, keepdim=True)  # head 1.0, every position
        return act

    def mean_mlp(act: torch.Tensor, hook: object) -> torch.Tensor:
        return mlp.mean(0, keepdim=True).expand_as(act).clone()

    full = _mean_logprob(model, tokens, [], targets)
    ablated = _mean_logprob(model, tokens, [("blocks.1.attn.hook_z", mean_head), ("blocks.0.hook_mlp_out", mean_mlp)],
                            targets)

    def patch_range(clean: torch.Tensor):  # type: ignore[no-untyped-def]  # a TL hook factory
        def put(act: torch.Tensor, hook: object) -> torch.Tensor:
            act = act.clone()
            act[:, 8:15] = clean[:, 8:15]  # patch_at: the selection second, positions [8, 15)
            return act
        return put

    corrupt = _mean_logprob(model, corrupted, [], targets)
    patched = _mean_logprob(model, corrupted, [("blocks.1.attn.hook_z", patch_range(z)),
                                               ("blocks.0.hook_mlp_out", patch_range(mlp))], targets)
    return full - ablated, (patched - corrupt) / (full - corrupt)


@pytest.mark.parametrize("arch", ["gpt2", "neox"])
def test_estimates_match_plain_hook_runs(folders: dict[str, Path], arch: str) -> None:
    path = _hypothesis(folders, arch)
    report = check(path)
    plan = compile_file(path)
    corrupted = next(v for k, v in plan.inputs.items() if k != "clean")
    assert not torch.equal(corrupted, plan.batch.tokens)
    drop, recovered = _reference(plan.loaded.model, plan.batch.tokens, corrupted)
    assert abs(drop) > 1e-3 and abs(recovered) > 1e-3  # the check compares something
    assert report.claims["abl"].estimate == pytest.approx(drop, abs=1e-5, rel=1e-4)
    assert report.claims["patch"].estimate == pytest.approx(recovered, abs=1e-5, rel=1e-4)
    prov = report.document["provenance"]
    assert prov["model_source"] == "hf" and prov["device"] == "cpu" and prov["dtype"] == "float32"
    assert prov["bridge_check"]["passed"] and prov["bridge_check"]["max_abs_diff"] <= prov["bridge_check"]["tolerance"]
    checks = {c["name"]: c for c in report.document["self_checks"]}
    assert checks["bridge_matches_model"]["passed"]


def test_model_option_resolves_against_the_current_directory(
    folders: dict[str, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _hypothesis(folders, "gpt2", model="no-such-model")
    monkeypatch.chdir(folders["root"].parent)
    code = main(["run", str(path), "--model", f"{folders['root'].name}/neox", "--report-dir",
                 str(folders["root"] / "reports"), "--quiet"])
    assert code == 0, capsys.readouterr()
    doc = json.loads((folders["root"] / "reports" / "hf-gpt2.json").read_text())
    assert doc["provenance"]["model"] == "neox" and doc["provenance"]["checkpoint"].endswith("neox/model.safetensors")


def test_rotary_model_has_no_pos_embed_and_parallel_blocks(folders: dict[str, Path]) -> None:
    neox, gpt2 = load(str(folders["neox"])), load(str(folders["gpt2"]))
    assert "hook_pos_embed" in neox.model.hook_dict  # listed by the bridge, never fired: why hook_dict is not asked
    assert PosEmbed() not in model_components(neox.model) and PosEmbed() in model_components(gpt2.model)
    assert ModelShape.of(neox.model).parallel_attn_mlp and not ModelShape.of(gpt2.model).parallel_attn_mlp
    assert neox.card["config"]["positional_embedding_type"] == "rotary" and neox.card["format"] == "hf"
    # validate's facts, read from config.json with no torch, agree with the loaded model's shape
    for folder, loaded in ((folders["neox"], neox), (folders["gpt2"], gpt2)):
        facts = card_facts(str(folder), Path.cwd())
        shape = ModelShape.of(loaded.model)
        assert facts is not None and (facts.n_layers, facts.n_heads, facts.has_pos_embed, facts.parallel_attn_mlp) \
            == (shape.n_layers, shape.n_heads, shape.has_pos_embed, shape.parallel_attn_mlp)


def test_tokenizer_loaded_when_present(folders: dict[str, Path]) -> None:
    with_tok, without = load(str(folders["gpt2"])), load(str(folders["neox"]))
    assert with_tok.tokenizer("w3 w7")["input_ids"] == [3, 7]
    assert without.tokenizer is None
    assert hf.require_tokenizer(with_tok, "x") is with_tok.tokenizer
    with pytest.raises(ModelLoadError, match=r"the 'prompts' dataset needs the model's tokenizer.*\n  fix: save"):
        hf.require_tokenizer(without, "the 'prompts' dataset")


def test_hash_covers_every_weight_file(folders: dict[str, Path], tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(folders["neox"], copy)
    weights = copy / "model.safetensors"
    expected = hashlib.sha256(b"model.safetensors\0" + weights.read_bytes()).hexdigest()
    first = load(str(copy))
    assert first.checkpoint_sha256 == expected
    state = load_file(weights)
    key = sorted(state)[0]
    state[key] = state[key] + 1.0
    save_file(state, weights, metadata={"format": "pt"})
    second = load(str(copy))
    assert second.checkpoint_sha256 != first.checkpoint_sha256 and second.model is not first.model


def test_bridge_check_refuses_unhonoured_config(
    folders: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(ModelLoadError, match=r"scale_attn_weights=False[\s\S]*fix: .*--trust-bridge") as err:
        load(str(folders["unscaled"]))
    assert "does not reproduce the model's own forward" in str(err.value)
    path = _hypothesis(folders, "unscaled")
    out = folders["root"] / "reports-unscaled"
    assert main(["run", str(path), "--report-dir", str(out), "--quiet"]) == 2
    assert "scale_attn_weights" in capsys.readouterr().err
    main(["run", str(path), "--report-dir", str(out), "--quiet", "--trust-bridge"])
    doc = json.loads((out / "hf-unscaled.json").read_text())
    probe = doc["provenance"]["bridge_check"]
    assert not probe["passed"] and probe["trusted"] and probe["max_abs_diff"] > probe["tolerance"]
    assert probe["unhonoured_config"] == ["scale_attn_weights=False"]
    bridge = {c["name"]: c for c in doc["self_checks"]}["bridge_matches_model"]
    assert not bridge["passed"] and "trusted" in bridge["detail"]
    with pytest.raises(ModelLoadError, match="scale_attn_weights"):  # a trusted load is not trusted later
        load(str(folders["unscaled"]))


def test_loading_errors(folders: dict[str, Path], tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelLoadError, match=r"holds no card.json and no config.json[\s\S]*\n  fix: .*hf:<name>"):
        load(str(empty))
    no_weights = tmp_path / "no-weights"
    shutil.copytree(folders["neox"], no_weights, ignore=shutil.ignore_patterns("*.safetensors"))
    with pytest.raises(ModelLoadError, match=r"config.json but no weights.*\n  fix: .*save_pretrained"):
        load(str(no_weights))
    unsupported = tmp_path / "biogpt"
    BioGptConfig(num_hidden_layers=1, hidden_size=16, num_attention_heads=2, intermediate_size=32,
                 vocab_size=VOCAB).save_pretrained(unsupported)
    with pytest.raises(ModelLoadError, match=r"architecture model_type 'biogpt' is not supported.*\n"
                                             r"  fix: .*GPT2LMHeadModel.*GPTNeoXForCausalLM"):
        load(str(unsupported))


def test_hf_names_come_from_the_local_cache_only(
    folders: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from huggingface_hub import constants

    cache = tmp_path / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    with pytest.raises(ModelLoadError, match=r"hf:someone/tiny: not in the local Hugging Face cache .*hub\)[\s\S]*"
                                             r"huggingface-cli download someone/tiny"):
        load("hf:someone/tiny")
    snapshot = cache / "models--someone--tiny" / "snapshots" / ("a" * 40)
    shutil.copytree(folders["gpt2"], snapshot)
    (cache / "models--someone--tiny" / "refs").mkdir()
    (cache / "models--someone--tiny" / "refs" / "main").write_text("a" * 40)
    loaded = load("hf:someone/tiny")
    assert loaded.name == "hf:someone/tiny" and loaded.checkpoint.parent == snapshot


def test_bfloat16_runs_end_to_end(folders: dict[str, Path]) -> None:
    path = _hypothesis(folders, "gpt2")
    full = check(path)
    half = check(path, dtype="bfloat16")
    prov = half.document["provenance"]
    assert prov["dtype"] == "bfloat16" and prov["bridge_check"]["tolerance"] > full.document["provenance"][
        "bridge_check"]["tolerance"]
    assert next(load(str(folders["gpt2"]), options=LoadOptions(dtype="bfloat16")).model.parameters()).dtype \
        == torch.bfloat16
    for claim in ("abl", "patch"):  # bf16 rounding moves the estimate, not its size
        assert half.claims[claim].estimate == pytest.approx(full.claims[claim].estimate, abs=0.1, rel=0.1)


def test_unavailable_device_is_one_line_with_a_fix(folders: dict[str, Path]) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(ModelLoadError, match=r"device 'cuda' is not available.*\n  fix: use --device cpu"):
        check(_hypothesis(folders, "gpt2"), device="cuda")


SUFFICIENCY = """\
version: 1
model: {model}
dataset: {{kind: file, path: tokens.pt}}
claims:
  - id: all
    statement: every component but the positional embedding keeps the log-probability
    kind: ablation
    mode: sufficiency
    components: [embed, attn0, mlp0, attn1, mlp1]
    method: mean
    positions: all
    metric: logprob
    threshold: {{at_least: 0.9}}
"""


@pytest.mark.parametrize(("arch", "vacuous"), [("neox", True), ("gpt2", False)])
def test_validate_reads_the_shape_from_config_json(
    folders: dict[str, Path], arch: str, vacuous: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without torch, validate knows a rotary model has no pos_embed: listing the rest keeps everything."""
    path = folders["root"] / f"suff-{arch}.yaml"
    path.write_text(SUFFICIENCY.format(model=arch))
    code = main(["validate", str(path)])
    err = capsys.readouterr().err
    assert (code == 2 and "keeps-everything" in err) if vacuous else (code == 0 and "keeps-everything" not in err)


def test_compare_runs_hugging_face_variants(folders: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    from circuitcheck.api import compare

    monkeypatch.chdir(folders["root"])
    report = compare(_hypothesis(folders, "gpt2"), ["gpt2", "neox"], models_base=folders["root"])
    for arch, run in report.variants.items():
        assert run is not None and run.document["provenance"]["model_source"] == "hf", arch
    assert sorted(report.variants) == ["gpt2", "neox"]
