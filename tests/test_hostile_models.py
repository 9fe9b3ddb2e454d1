"""Hostile datasets, model cards, checkpoints and paths: each is exit 2 with a message naming the
file and the fix, never an internal error (issue 16; the end-to-end cases are in test_hostile.py)."""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from circuitcheck.cli import main
from circuitcheck.comparison import compare_file
from circuitcheck.errors import CircuitcheckError, ModelLoadError, PlanError
from circuitcheck.plan.compile import compile_file
from circuitcheck.report.progress import Tracker
from circuitcheck.run.execute import run_file
from circuitcheck.zoo.load import load, zoo_root
from tests.conftest import VALID_FILE

TRIGRAM = zoo_root() / "trigram"
FILE_DATA = "dataset: {kind: file, path: tokens.pt}\n"


def with_dataset(text: str, dataset: str) -> str:
    start, end = text.index("dataset:"), text.index("positions:")
    return text[:start] + dataset + text[end:]


def hypothesis(folder: Path, model: str = "trigram", dataset: str | None = None) -> Path:
    text = VALID_FILE.lstrip("\n").replace("model: trigram", f"model: {model}")
    path = folder / "h.yaml"
    path.write_text(with_dataset(text, dataset) if dataset else text)
    return path


def run(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str]:
    code = main(["run", *map(str, args), "--quiet", "--report-dir", str(Path(args[0]).parent / "reports")])
    err = capsys.readouterr().err
    assert "internal error" not in err and "Traceback" not in err, err
    return code, err


def model_copy(folder: Path, card_edit: Callable[[dict], None] | None = None) -> Path:
    target = folder / "copy"
    shutil.copytree(TRIGRAM, target)
    if card_edit is not None:
        card = json.loads((target / "card.json").read_text())
        card_edit(card)
        (target / "card.json").write_text(json.dumps(card))
    return target


# --- 1. file datasets ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tokens", "fragment"),
    [
        (
            torch.zeros(0, 50, dtype=torch.long),
            r"tokens.pt: 'tokens' is empty \(shape \(0, 50\)\)\n  fix: save at least one sequence",
        ),
        (torch.zeros(64, 0, dtype=torch.long), r"tokens.pt: 'tokens' is empty \(shape \(64, 0\)\)"),
        (torch.full((8, 50), 3.7), r"tokens.pt: token ids must be integers, got float32\n  fix: save a LongTensor"),
        (torch.full((8, 50), float("nan"), dtype=torch.float64), r"token ids must be integers, got float64"),
        (torch.zeros(8, 50, dtype=torch.bool), r"token ids must be integers, got bool"),
        (
            torch.full((2, 50), 10**12),
            r"token ids must lie in \[0, 75\); \S+tokens.pt has 1000000000000 at sequence 0, position 0",
        ),
        (torch.tensor([[1] * 49 + [-3]]), r"has -3 at sequence 0, position 49"),
        (torch.zeros(2, 3, 50, dtype=torch.long), r"'tokens' must be \[batch, seq\], got shape \(2, 3, 50\)"),
        (torch.zeros(50, dtype=torch.long), r"must be \[batch, seq\], got shape \(50,\)"),
        (torch.zeros(4, 1, dtype=torch.long), r"sequences of 1 token have no next-token targets"),
        (torch.zeros(4, 60, dtype=torch.long), r"sequences of 60 tokens exceed the model's n_ctx 50"),
    ],
    ids=["empty-rows", "empty-cols", "float", "nan", "bool", "huge", "negative", "3d", "1d", "one-token", "too-long"],
)
def test_bad_token_files_are_exit_2_naming_the_file(tmp_path, capsys, tokens, fragment):
    torch.save({"tokens": tokens}, tmp_path / "tokens.pt")
    code, err = run(capsys, hypothesis(tmp_path, dataset=FILE_DATA))
    assert code == 2
    assert f"{tmp_path / 'h.yaml'}:" in err and str(tmp_path / "tokens.pt") in err
    assert re.search(fragment, err), err


def test_float_tokens_are_refused_not_truncated(tmp_path):
    torch.save({"tokens": torch.full((8, 50), 3.7)}, tmp_path / "tokens.pt")
    with pytest.raises(CircuitcheckError, match="token ids must be integers, got float32"):
        compile_file(hypothesis(tmp_path, dataset=FILE_DATA))
    roles = torch.zeros(8, 50, dtype=torch.uint8)
    roles[:, 10] = 2  # Y, so the file's selection matches
    torch.save({"tokens": torch.full((8, 50), 3, dtype=torch.int32), "roles": roles}, tmp_path / "tokens.pt")
    dataset = "dataset: {kind: file, path: tokens.pt, roles_key: roles}\n"
    batch = compile_file(hypothesis(tmp_path, dataset=dataset)).batch  # narrower integer types are fine
    assert batch.tokens.dtype == torch.int64 and int(batch.tokens[0, 0]) == 3 and int(batch.roles[0, 10]) == 2


def test_token_file_errors_say_where_a_path_resolved(tmp_path, capsys):
    code, err = run(capsys, hypothesis(tmp_path, dataset=FILE_DATA))
    assert code == 2
    assert f"no such file: {tmp_path / 'tokens.pt'} (resolved against the hypothesis file's folder {tmp_path})" in err


def test_a_pickled_token_file_is_refused_without_pytorchs_advice(tmp_path, capsys):
    torch.save({"tokens": argparse.Namespace(x=1)}, tmp_path / "tokens.pt")
    code, err = run(capsys, hypothesis(tmp_path, dataset=FILE_DATA))
    assert code == 2 and "argparse.Namespace" in err and "plain tensors" in err
    assert "weights_only=False" not in err and "weights_only` set to `False" not in err


def test_roles_must_be_integer_codes(tmp_path, capsys):
    save_file(
        {"tokens": torch.zeros(2, 50, dtype=torch.long), "roles": torch.full((2, 50), 1.5)},
        str(tmp_path / "t.safetensors"),
    )
    dataset = "dataset: {kind: file, path: t.safetensors, roles_key: roles}\n"
    code, err = run(capsys, hypothesis(tmp_path, dataset=dataset))
    assert code == 2 and "dataset.roles_key: " in err and "role ids must be integer role codes, got float32" in err


@pytest.mark.parametrize(
    ("edit", "fragment"),
    [
        (
            lambda c: c["task"].pop("seq_len"),
            "cannot build a 'trigram' dataset from the model card's task: KeyError: 'seq_len'",
        ),
        (lambda c: c["task"].update(d_vocab=100_000), "task.d_vocab 100000 differs from config.d_vocab 75"),
        (lambda c: c["task"].update(seq_len=-4), "task.seq_len -4 leaves no room for a trigram"),
        (lambda c: c["task"].update(n_trigrams="many"), "ValueError"),
    ],
    ids=["missing-key", "vocab", "negative-seq-len", "not-a-number"],
)
def test_a_malformed_card_task_is_a_dataset_error(tmp_path, capsys, edit, fragment):
    model_copy(tmp_path, edit)
    code, err = run(capsys, hypothesis(tmp_path, model="./copy"))
    assert code == 2 and "h.yaml:" in err and fragment in err, err


def test_nan_string_weights_never_reach_torch(tmp_path):
    from circuitcheck.data.registry import DataContext
    from circuitcheck.data.strings import StringsDataset

    ctx = DataContext({"task": {"vocab": ["A", "B"], "strings": ["AB", "BA"]}}, tmp_path, 2, 4)
    with pytest.raises(ValueError, match="finite number"):  # the spec refuses them first ...
        StringsDataset(kind="strings", n_seqs=4, seed=1, weights=[float("nan"), 1.0])
    unchecked = StringsDataset.model_construct(
        kind="strings", n_seqs=4, seed=1, strings=None, weights=[float("nan"), 1.0]
    )
    with pytest.raises(PlanError, match="finite non-negative weights"):  # ... and the builder, not torch.multinomial
        unchecked.build(ctx)


def test_copy_bigram_checks_the_cards_length_before_generating(tmp_path):
    from circuitcheck.data.copy_bigram import CopyBigramDataset
    from circuitcheck.data.registry import DataContext

    task = {"kind": "copy_bigram", "seq_len": 10**9, "d_vocab": 5, "p_bigram": 0.3, "p_copy": 0.3}
    with pytest.raises(PlanError, match=r"task.seq_len 1000000000 is not in 1..n_ctx \(8\)"):
        CopyBigramDataset(kind="copy_bigram", n_seqs=100_000, seed=1).build(DataContext({"task": task}, tmp_path, 5, 8))


# --- 2. paths inside model cards ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("checkpoint", "why"),
    [
        ("/etc/passwd", "is an absolute path"),
        ("../other/model.safetensors", "goes through '..'"),
        ("sub/../../x.safetensors", "goes through '..'"),
        ("../copy/model.safetensors", "goes through '..'"),  # even back into the folder: a card names its own files
    ],
)
def test_a_cards_checkpoint_must_stay_inside_its_folder(tmp_path, capsys, checkpoint, why):
    copy = model_copy(tmp_path, lambda c: c.update(checkpoint=checkpoint))
    code, err = run(capsys, hypothesis(tmp_path, model="./copy"))
    assert code == 2
    assert (
        f"{copy / 'card.json'}: checkpoint {checkpoint!r} {why}; a card's paths resolve against its own folder " in err
    )
    assert f"{copy.resolve()} and must stay inside it\n  fix: put the file in" in err


def test_a_checkpoint_linked_out_of_the_folder_is_refused(tmp_path):
    copy = model_copy(tmp_path, lambda c: c.update(checkpoint="link.safetensors"))
    os.symlink(TRIGRAM / "model.safetensors", copy / "link.safetensors")
    with pytest.raises(
        ModelLoadError, match=r"checkpoint 'link.safetensors' resolves to \S+/models/trigram/model.safetensors, outside"
    ):
        load(str(copy))


def test_a_missing_checkpoint_says_what_it_resolved_against(tmp_path):
    copy = model_copy(tmp_path, lambda c: c.update(checkpoint="gone.safetensors"))
    with pytest.raises(
        ModelLoadError, match=r"checkpoint 'gone.safetensors' does not exist \(resolved against the model folder "
    ):
        load(str(copy))


@pytest.mark.parametrize(
    ("edit", "fragment"),
    [
        (lambda c: c.update(checkpoint=5), "checkpoint must be a JSON string, got 5"),
        (lambda c: c.update(config="x"), "config must be a JSON object, got 'x'"),
        (lambda c: c.update(task=[1]), "task must be a JSON object"),
        (lambda c: c.update(checkpoint="a\0b"), "is not a usable path"),
        (lambda c: c["config"].update(n_layers="two"), "bad config"),
    ],
    ids=["int-checkpoint", "string-config", "list-task", "nul", "bad-config-value"],
)
def test_malformed_cards_are_load_errors(tmp_path, edit, fragment):
    copy = model_copy(tmp_path, edit)
    with pytest.raises(ModelLoadError, match=f"{copy / 'card.json'}: .*{fragment}"):
        load(str(copy))


def test_a_card_that_is_not_an_object(tmp_path):
    (tmp_path / "card.json").write_text("[1, 2]")
    with pytest.raises(ModelLoadError, match="a model card is a JSON object, got list"):
        load(str(tmp_path))


# --- 3. checkpoint messages -------------------------------------------------------------------------


def test_a_pickled_checkpoint_never_relays_weights_only_false(tmp_path, capsys):
    copy = model_copy(tmp_path, lambda c: c.update(checkpoint="model.pt"))
    torch.save({"x": argparse.Namespace(a=1)}, copy / "model.pt")
    code, err = run(capsys, hypothesis(tmp_path, model="./copy"))
    assert code == 2
    assert f"{copy / 'model.pt'}: cannot read checkpoint: it holds a pickled Python object (argparse.Namespace)" in err
    assert "circuitcheck loads only plain tensors" in err and "torch.save(model.state_dict(), path)" in err
    assert "weights_only=False" not in err and "`False`" not in err and "add_safe_globals" not in err


def test_garbage_checkpoint_is_unreadable_without_pytorchs_advice(tmp_path):
    copy = model_copy(tmp_path, lambda c: c.update(checkpoint="model.pt"))
    (copy / "model.pt").write_bytes(b"\x80\x02garbage\x1b[31m")
    with pytest.raises(ModelLoadError, match="cannot read checkpoint") as info:
        load(str(copy))
    assert "False" not in str(info.value) and "\x1b" not in str(info.value)


def test_a_checkpoint_of_another_model_says_it_does_not_match_the_architecture(tmp_path):
    copy = model_copy(tmp_path)
    shutil.copy(zoo_root() / "caesar-easy" / "model.safetensors", copy / "model.safetensors")
    with pytest.raises(ModelLoadError) as info:
        load(str(copy))
    text = str(info.value)
    assert f"{copy / 'model.safetensors'}: checkpoint does not match the architecture in {copy / 'card.json'}" in text
    assert "shape mismatch: blocks.0.attn.k.bias: checkpoint (48,) vs config (16,)" in text and "more)" in text
    assert "final-norm" not in text and "fix: point the card's checkpoint at weights trained with this config" in text


def test_nan_weights_name_the_checkpoint_and_parameter(tmp_path, capsys):
    copy = model_copy(tmp_path)
    state = load_file(str(copy / "model.safetensors"))
    state["blocks.0.mlp.in.weight"] = state["blocks.0.mlp.in.weight"].clone()
    state["blocks.0.mlp.in.weight"][0, 0] = float("inf")
    save_file(state, str(copy / "model.safetensors"))
    code, err = run(capsys, hypothesis(tmp_path, model="./copy"))
    assert code == 2
    assert f"{copy / 'model.safetensors'}: parameter 'blocks.0.mlp.in.weight' has 1 non-finite value(s)" in err


# --- 4. which folder a model path resolves against ------------------------------------------------


def test_a_command_line_model_resolves_against_the_current_directory(tmp_path, capsys, monkeypatch):
    (tmp_path / "sub").mkdir()
    path = hypothesis(tmp_path / "sub")
    model_copy(tmp_path)
    monkeypatch.chdir(tmp_path)
    code, err = run(capsys, path, "--model", "copy")
    assert code == 0, err
    code, err = run(capsys, path, "--model", "sub/copy")
    assert code == 2
    assert (
        f"no model 'sub/copy': {tmp_path / 'sub' / 'copy'} "
        f"(resolved against the current directory {tmp_path}) holds no card.json"
        in err
    )


def test_a_files_model_resolves_against_its_folder(tmp_path, capsys, monkeypatch):
    (tmp_path / "sub").mkdir()
    model_copy(tmp_path / "sub")
    monkeypatch.chdir(tmp_path)
    assert run(capsys, hypothesis(tmp_path / "sub", model="./copy"))[0] == 0
    code, err = run(capsys, hypothesis(tmp_path / "sub", model="sub/copy"))
    assert code == 2
    assert "h.yaml:2:8: model: no model 'sub/copy': " in err
    assert f"(resolved against the hypothesis file's folder {tmp_path / 'sub'})" in err


def test_zoo_names_work_in_both_places(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert run(capsys, hypothesis(tmp_path, model="trigram"))[0] == 0
    assert run(capsys, hypothesis(tmp_path, model="copy-nowhere"), "--model", "trigram")[0] == 0
    code, err = run(capsys, hypothesis(tmp_path), "--model", "trigarm")
    assert code == 2 and "no model 'trigarm': not a zoo name, and " in err and "Zoo models: " in err


# --- 5. compare: one checkpoint under two names -------------------------------------------------


def test_compare_refuses_a_zoo_name_and_its_path(tmp_path, capsys):
    path = hypothesis(tmp_path)
    code = main(
        ["compare", str(path), "--model", "trigram", "--model", str(TRIGRAM), "--report-dir", str(tmp_path / "r")]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert f"variants 'trigram' and '{TRIGRAM}' are the same checkpoint (sha256 " in err
    assert "give each model once" in err and not list((tmp_path / "r").glob("*"))  # refused before any run


def test_compare_refuses_two_paths_to_one_folder(tmp_path, monkeypatch):
    model_copy(tmp_path)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(
        CircuitcheckError, match=r"variants 'copy' and './copy/card.json' are the same checkpoint \(sha256 [0-9a-f]{12}"
    ):
        compare_file(hypothesis(tmp_path), ["copy", "./copy/card.json"], models_base=tmp_path)


def test_compare_resolves_command_line_models_against_the_given_base(tmp_path, monkeypatch):
    (tmp_path / "sub").mkdir()
    model_copy(tmp_path)
    monkeypatch.chdir(tmp_path)
    found = compare_file(hypothesis(tmp_path / "sub"), ["trigram", "copy"], models_base=tmp_path)
    assert [v.model for v in found.variants] == ["trigram", "copy"] and all(v.result for v in found.variants)
    with pytest.raises(CircuitcheckError, match=r"resolved against the hypothesis file's folder"):
        compare_file(hypothesis(tmp_path / "sub"), ["trigram", "./copy"])


# --- 6. --max-rows --------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "shown"), [("abc", "'abc'"), ("0", "0"), ("-3", "-3"), ("1.5", "'1.5'")])
def test_max_rows_must_be_a_whole_number(capsys, value, shown):
    with pytest.raises(SystemExit) as info:
        main(["run", "x.yaml", "--max-rows", value])
    err = capsys.readouterr().err
    assert info.value.code == 2
    assert f"argument --max-rows/--max-batch: expected a whole number >= 1, got {shown}" in err
    assert "_positive" not in err


# --- 7. progress of long runs ---------------------------------------------------------------------


def test_run_file_reports_stages_and_pass_counts(trigram, tmp_path):
    plan = compile_file(hypothesis(tmp_path))
    heard: list[str] = []
    before = dict(trigram.model.unembed._forward_hooks)
    result = run_file(plan, max_rows=4, progress=heard.append)
    assert heard[0] == "clean run of 50 sequences: 0 forward passes, 0 rows so far"
    assert any(h.startswith("scoring claims: ") for h in heard)
    last = int(heard[-1].split(": ")[1].split()[0])
    assert last >= 50 // 4 + 1  # at least the clean run's passes, counted as they happened
    assert dict(trigram.model.unembed._forward_hooks) == before  # the counting hook is removed
    quiet = run_file(plan, max_rows=4)
    assert [c.measurement.estimate for c in quiet.claims] == [c.measurement.estimate for c in result.claims]


def test_tracker_notes_show_under_the_running_step():
    from rich.console import Console

    buffer = io.StringIO()
    with (
        Tracker(1, True, Console(file=buffer, force_terminal=True, width=120)) as tracker,
        tracker.step("running 7 claims"),
    ):
        tracker.note("clean run: 12 forward passes")
    assert "running 7 claims: clean run: 12 forward passes" in buffer.getvalue()
    Tracker(1, False).note("ignored when disabled")
