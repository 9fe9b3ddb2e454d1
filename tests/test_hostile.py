"""Hostile input and faults, end to end: the CLI in a subprocess under time and memory limits.

Every case asserts the exit code, a message fragment, no traceback, a bounded time, and that
nothing was written outside the temporary report folder. One class of the hostile-input review
(issue 16) per case; the unit-level tests of each fix live in test_hostile_spec.py,
test_atomic_writes.py and test_hostile_models.py.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from tests.conftest import REPO
from tests.test_hostile_models import model_copy as copy_trigram

TRIGRAM = REPO / "models" / "trigram"
MEMORY_LIMIT = 6 << 30  # address space: torch's import needs ~2 GiB; a YAML bomb would need far more

VALID = """\
version: 1
name: {name}
model: {model}
dataset: {dataset}
positions:
  Y: {{role: Y}}
claims:
  - id: T8
    statement: {statement}
    kind: ablation
    mode: necessity
    components: ["0.0"]
    method: mean
    positions: Y
    metric: accuracy
    effect: relative_drop
    threshold: {threshold}
{extra}"""


def hypothesis(**overrides: str) -> str:
    fields = {
        "name": "hostile",
        "model": "trigram",
        "dataset": "{kind: trigram, n_seqs: 80, seed: 1, density: 0.05}",  # 40 leaves T8 inconclusive (Wilson bound)
        "statement": "Mean-ablating the head destroys trigram completion.",
        "threshold": "{at_least: 0.5}",
        "extra": "",
    }
    return VALID.format(**(fields | overrides))


@dataclass
class Case:
    id: str
    command: list[str]
    files: Callable[[Path], None]
    exit: int
    fragment: str
    seconds: float = 60.0
    absent: list[str] = field(default_factory=list)


def _limits() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def run_cli(args: list[str], cwd: Path, timeout: float) -> tuple[subprocess.CompletedProcess[str], float]:
    env = os.environ | {"PYTHONPATH": str(REPO), "CIRCUITCHECK_ZOO": str(REPO / "models")}
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "circuitcheck.cli", *args],
        cwd=cwd, capture_output=True, text=True, timeout=timeout, preexec_fn=_limits, env=env, stdin=subprocess.DEVNULL,
    )
    return proc, time.perf_counter() - start


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def write(name: str, text: str) -> Callable[[Path], None]:
    def make(cwd: Path) -> None:
        (cwd / name).write_text(text)

    return make


def both(*makers: Callable[[Path], None]) -> Callable[[Path], None]:
    def make(cwd: Path) -> None:
        for maker in makers:
            maker(cwd)

    return make


def token_file(tokens: torch.Tensor) -> Callable[[Path], None]:
    def make(cwd: Path) -> None:
        torch.save({"tokens": tokens}, cwd / "tokens.pt")

    return make


def model_copy(card_edit: Callable[[dict], None] | None = None,
               weights: Callable[[Path], None] | None = None) -> Callable[[Path], None]:
    def make(cwd: Path) -> None:
        target = copy_trigram(cwd, card_edit)
        if weights is not None:
            weights(target)

    return make


def nan_weights(folder: Path) -> None:
    state = load_file(str(folder / "model.safetensors"))
    key = sorted(state)[0]
    state[key] = state[key].clone()
    state[key].view(-1)[0] = float("nan")
    save_file(state, str(folder / "model.safetensors"))


CANARY = f"/tmp/circuitcheck-canary-{uuid.uuid4().hex}"


class _Payload:
    def __reduce__(self) -> tuple:
        return (os.system, (f"touch {CANARY}",))


def pickle_payload(folder: Path) -> None:
    torch.save({"x": _Payload()}, folder / "model.pt")


def _pickle_card(card: dict) -> None:
    card["checkpoint"] = "model.pt"
    card["format"] = "hooked-transformer"


BILLION_LAUGHS = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]\n" for i in range(12)
) + "version: 1\n"

RUN = ["run", "h.yaml", "--report-dir", "../reports", "--quiet"]
VALIDATE = ["validate", "h.yaml"]

CASES = [
    # 1. report names decide where files go
    Case("name-absolute", RUN, write("h.yaml", hypothesis(name=CANARY)), 2, "name", absent=[CANARY + ".json"]),
    Case("name-dotdot", RUN, write("h.yaml", hypothesis(name="../../escape")), 2, "name"),
    Case("name-overwrite", RUN, both(write("h.yaml", hypothesis(name="../cwd/h")), write("keep.txt", "x")), 2, "name"),
    Case("name-nul", VALIDATE, write("h.yaml", hypothesis(name='"a\\0b"')), 2, "name"),
    Case("name-leading-dot", VALIDATE, write("h.yaml", hypothesis(name=".hidden")), 2, "name"),
    # 2. YAML resource exhaustion
    Case("billion-laughs", VALIDATE, write("h.yaml", BILLION_LAUGHS), 2, "alias", seconds=20),
    Case("billion-laughs-run", RUN, write("h.yaml", BILLION_LAUGHS), 2, "alias", seconds=20),
    Case("deep-brackets", VALIDATE, write("h.yaml", "a: " + "[" * 5000 + "]" * 5000 + "\n"), 2, "deep", seconds=20),
    Case("deep-braces", VALIDATE, write("h.yaml", "a: " + "{b: " * 3000 + "1" + "}" * 3000 + "\n"),
         2, "deep", seconds=20),
    Case("huge-file", VALIDATE, write("h.yaml", "# " + "x" * (3 << 20) + "\n"), 2, "bytes", seconds=20),
    Case("python-tag", VALIDATE,
         write("h.yaml", hypothesis(statement=f"!!python/object/apply:os.system ['touch {CANARY}']")),
         2, "tag", absent=[CANARY]),
    # 3. non-finite thresholds and YAML 1.1 booleans
    Case("nan-refuted", RUN, write("h.yaml", hypothesis(threshold="{at_least: .nan}",
                                                         extra="    expect: refuted\n    expect_reason: x\n")),
         2, "finite"),
    Case("nan-known", VALIDATE, write("h.yaml", hypothesis(threshold="{at_least: .nan}",
                                                            extra="    expect: known_failure\n    expect_reason: x\n")),
         2, "finite"),
    Case("inf-at-most", VALIDATE, write("h.yaml", hypothesis(threshold="{at_most: .inf}")), 2, "finite"),
    Case("minus-inf", VALIDATE, write("h.yaml", hypothesis(threshold="{at_least: -.inf}")), 2, "finite"),
    Case("yaml11-bool", VALIDATE, write("h.yaml", hypothesis(extra="    expect: no\n    expect_reason: x\n")),
         2, "quote"),
    # 5. bad data that used to be an internal error
    Case("empty-tokens-rows", RUN, both(write("h.yaml", hypothesis(dataset="{kind: file, path: tokens.pt}")),
                                        token_file(torch.zeros(0, 50, dtype=torch.long))), 2, "empty"),
    Case("empty-tokens-cols", RUN, both(write("h.yaml", hypothesis(dataset="{kind: file, path: tokens.pt}")),
                                        token_file(torch.zeros(64, 0, dtype=torch.long))), 2, "empty"),
    Case("float-tokens", RUN, both(write("h.yaml", hypothesis(dataset="{kind: file, path: tokens.pt}")),
                                   token_file(torch.full((8, 50), 3.7))), 2, "integer"),
    # 6. paths in cards, checkpoints and on the command line
    Case("card-escape", RUN, both(write("h.yaml", hypothesis(model="copy")),
                                  model_copy(lambda c: c.update(checkpoint="/etc/passwd"))), 2, "inside"),
    Case("card-dotdot", RUN, both(write("h.yaml", hypothesis(model="copy")),
                                  model_copy(lambda c: c.update(checkpoint="../model/model.safetensors"))),
         2, "inside"),
    Case("pickle-payload", RUN,
         both(write("h.yaml", hypothesis(model="copy")), model_copy(_pickle_card, pickle_payload)),
         2, "model.pt", absent=[CANARY]),
    Case("nan-weights", RUN, both(write("h.yaml", hypothesis(model="copy")), model_copy(weights=nan_weights)),
         2, "model.safetensors"),
    Case("report-dir-is-file", ["run", "h.yaml", "--report-dir", "h.yaml", "--quiet"],
         write("h.yaml", hypothesis()), 2, "report", seconds=30),
    Case("model-flag-cwd", ["run", "sub/h.yaml", "--model", "copy", "--report-dir", "../reports", "--quiet"],
         both(lambda cwd: (cwd / "sub").mkdir(), write("sub/h.yaml", hypothesis()), model_copy()), 0, "reports:"),
    # 7. smaller
    Case("negative-dataset-seed", VALIDATE,
         write("h.yaml", hypothesis(dataset="{kind: trigram, n_seqs: 40, seed: -1, density: 0.05}")),
         2, "seed"),
    Case("init-out-unwritable", ["init", "--model", "trigram", "-o", "h.yaml/new.yaml"], write("h.yaml", hypothesis()),
         2, "cannot write the scaffold", seconds=30),
    Case("max-rows-abc", ["run", "h.yaml", "--max-rows", "abc"], write("h.yaml", hypothesis()), 2, "whole number"),
    Case("compare-same-model", ["compare", "h.yaml", "--model", "trigram", "--model", str(TRIGRAM),
                                "--report-dir", "../reports", "--quiet"],
         write("h.yaml", hypothesis()), 2, "same checkpoint"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_input(case: Case, tmp_path: Path) -> None:
    cwd, reports = tmp_path / "cwd", tmp_path / "reports"
    cwd.mkdir()
    reports.mkdir()
    case.files(cwd)
    before = snapshot(tmp_path)
    proc, seconds = run_cli(case.command, cwd, timeout=case.seconds * 3)
    out = proc.stdout + proc.stderr
    assert proc.returncode == case.exit, out
    assert case.fragment.lower() in out.lower(), out
    assert "Traceback" not in out and "internal error" not in out, out
    assert seconds < case.seconds, f"took {seconds:.1f}s"
    after = snapshot(tmp_path)
    changed = {k for k in after if before.get(k) != after[k]} | (set(before) - set(after))
    assert all(k.startswith("reports/") for k in changed), f"written outside the report folder: {sorted(changed)}"
    for path in case.absent:
        assert not Path(path).exists(), f"{path} was created"
    if case.exit == 2 and case.command[0] == "run":
        assert not any(reports.iterdir()), "a refused run wrote reports"


def test_markdown_report_escapes_user_text(tmp_path: Path) -> None:
    cwd, reports = tmp_path / "cwd", tmp_path / "reports"
    cwd.mkdir()
    statement = '"<script>alert(1)</script> a | b"'
    write("h.yaml", hypothesis(statement=statement))(cwd)
    proc, _ = run_cli(["run", "h.yaml", "--report-dir", str(reports), "--quiet"], cwd, timeout=180)
    assert proc.returncode in (0, 1), proc.stderr
    md = (reports / "hostile.md").read_text()
    html = (reports / "hostile.html").read_text()
    assert "<script>alert" not in md and "&lt;script&gt;" in md
    assert "<script>alert" not in html
    json_doc = json.loads((reports / "hostile.json").read_text())
    assert json_doc["claims"][0]["statement"].startswith("<script>")  # JSON keeps the text as written


def test_scaffold_of_a_model_with_an_unsafe_name_validates(tmp_path: Path) -> None:
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    model_copy(lambda card: card.update(name="my model/v2"))(cwd)
    proc, _ = run_cli(["init", "--model", "copy", "-o", "scaffold.yaml"], cwd, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "my-model-v2-hypotheses" in (cwd / "scaffold.yaml").read_text()
    proc, _ = run_cli(["validate", "scaffold.yaml"], cwd, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
