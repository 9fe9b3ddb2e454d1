"""circuitcheck's engine against TransformerLens's own patching, side by side in one process.

Both run the same denoising sweeps on the same model, tokens and corruption: every head x position
(``transformer_lens.patching.get_act_patch_attn_head_out_by_pos``) and every ``hook_resid_pre`` x position
(``get_act_patch_resid_pre``); TL runs one full forward pass per cell, the engine stacks the cells, starts
each pass at the patched layer, recomputes only the positions from the patched one on and unembeds only the scored
position (:mod:`circuitcheck.sweep.cells`, :mod:`circuitcheck.run.suffix`). Both score the same number per cell: the
mean log-probability of the clean next token at the scored position in the patched run (TL's ``patching_metric``,
written here in plain torch), and must agree to ``AGREEMENT_ATOL``.

Models: a GPT-2-small-shaped random model (``transformers.GPT2Config``, saved with ``save_pretrained`` and booted
with ``TransformerBridge.boot_transformers``; ``--quick``: 4 layers), and ``models/ioi-mini`` when it exists.
The floor is :func:`benchmarks.measure.floor_pass`: plain forward passes of as many rows as the engine's variants,
chunked as the engine chunks. ``circuitcheck sweep`` is also timed as users run it (a cold CLI subprocess).

    python benchmarks/peer.py --quick          # the last line printed is JSON
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # benchmarks.measure and circuitcheck from this checkout, as run.py does

from benchmarks.measure import AGREEMENT_ATOL, floor_pass, timed  # noqa: E402
from circuitcheck.claims.activation_patching import corrupt_tokens  # noqa: E402
from circuitcheck.data.batch import NO_TARGET  # noqa: E402
from circuitcheck.metrics import metrics  # noqa: E402
from circuitcheck.run.execute import LOGIT_BYTES_PER_CALL  # noqa: E402
from circuitcheck.sweep.cells import sweep_values  # noqa: E402

CORRUPTION_SEED = 5


@dataclass(frozen=True)
class Shape:
    n_layers: int
    n_heads: int = 12
    d_model: int = 768
    vocab: int = 50257
    n_prompts: int = 20
    seq: int = 15


FULL = Shape(n_layers=12)
QUICK = Shape(n_layers=4, vocab=5000, n_prompts=6, seq=8)


@dataclass(frozen=True)
class Task:
    """One model's sweeps: the clean tokens, the corrupted ones, the clean next tokens and the scored mask."""

    name: str
    model: Any
    tokens: torch.Tensor
    corrupted: torch.Tensor
    next_token: torch.Tensor
    mask: torch.Tensor
    folder: Path
    corrupt_range: tuple[int, int]
    score_at: int


@dataclass(frozen=True)
class SweepRow:
    model: str
    sweep: str
    cells: int
    engine_s: float
    tl_s: float
    floor_s: float
    max_abs_diff: float
    max_effect: float
    """Largest |M_patched - M_corrupted| over the cells: zero would mean the patches changed nothing and the
    agreement proved nothing."""

    @property
    def tl_over_engine(self) -> float:
        return self.tl_s / self.engine_s

    @property
    def engine_over_floor(self) -> float:
        return self.engine_s / self.floor_s


def gpt2_folder(shape: Shape, folder: Path, seed: int = 0) -> Path:
    """A random GPT-2-shaped model saved as a Hugging Face folder (no tokenizer: the prompts are token ids)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    config = GPT2Config(n_layer=shape.n_layers, n_head=shape.n_heads, n_embd=shape.d_model,
                        vocab_size=shape.vocab, n_positions=max(64, shape.seq))
    GPT2LMHeadModel(config).save_pretrained(folder)
    return folder


def boot(folder: Path, device: str) -> Any:
    from transformer_lens.model_bridge import TransformerBridge

    from circuitcheck.zoo.build import frozen

    return frozen(TransformerBridge.boot_transformers(str(folder), device=device))


def make_task(name: str, model: Any, folder: Path, n_prompts: int, seq: int, device: str, seed: int = 0) -> Task:
    """Random prompts; the first half of each prompt corrupted as the ``resample_tokens`` scheme does; scored at
    the last position that has a next token."""
    gen = torch.Generator().manual_seed(seed)
    vocab = int(model.cfg.d_vocab)
    tokens = torch.randint(0, vocab, (n_prompts, seq), generator=gen)
    where = torch.zeros(n_prompts, seq, dtype=torch.bool)
    corrupt_range = (0, seq // 2)
    where[:, corrupt_range[0] : corrupt_range[1]] = True
    corrupted = corrupt_tokens(tokens, where, vocab, CORRUPTION_SEED)
    next_token = torch.full_like(tokens, NO_TARGET)
    next_token[:, :-1] = tokens[:, 1:]
    mask = torch.zeros(n_prompts, seq, dtype=torch.bool)
    mask[:, seq - 2] = True
    return Task(name, model, tokens.to(device), corrupted.to(device), next_token.to(device), mask.to(device),
                folder, corrupt_range, seq - 2)


def tl_metric(task: Task) -> Callable[[torch.Tensor], torch.Tensor]:
    """TL's ``patching_metric``: the mean log-probability of the clean next token at the scored positions."""
    targets = task.next_token[task.mask]

    def metric(logits: torch.Tensor) -> torch.Tensor:
        logprobs = logits[task.mask].log_softmax(-1)
        return logprobs.gather(-1, targets[:, None]).squeeze(-1).double().mean()

    return metric


def rows_per_call(task: Task) -> int:
    """The engine's rows per forward call, as ``circuitcheck sweep`` sets them (logits within a memory bound)."""
    row = int(task.tokens.shape[1]) * int(task.model.cfg.d_vocab) * 4
    return max(1, min(4096, LOGIT_BYTES_PER_CALL // row))


def compare(task: Task, sweep: str) -> SweepRow:
    """Time TL's sweep, the engine's and the floor once each (one warm-up forward first); check agreement."""
    from transformer_lens import patching

    model = task.model
    max_rows = rows_per_call(task)
    patching.tqdm = lambda cells, *args, **kwargs: cells  # TL's per-cell progress bar: a flood of log lines
    metric = metrics.get("logprob")
    with torch.no_grad():
        model(task.tokens[:1])  # warm-up: first-call allocations and lazy initialisation

        def engine() -> Any:
            return sweep_values(model, task.tokens, task.corrupted, task.next_token, sweep, metric, task.mask,
                                max_rows)

        def tl() -> torch.Tensor:
            _, cache = model.run_with_cache(task.tokens)
            fn = patching.get_act_patch_attn_head_out_by_pos if sweep == "heads" else patching.get_act_patch_resid_pre
            return fn(model, task.corrupted, cache, tl_metric(task))

        engine_s, values = timed(engine)
        tl_s, tl_out = timed(tl)
        floor_s, _ = timed(lambda: floor_pass(model, task.tokens, values.n_variants, max_rows))
    _, m_corrupted, m_patched = values.means()
    n_layers, seq = int(model.cfg.n_layers), int(task.tokens.shape[1])
    if sweep == "heads":  # engine cells: layer, head, position; TL's: [layer, pos, head]
        ours = m_patched.view(n_layers, int(model.cfg.n_heads), seq).permute(0, 2, 1)
    else:
        ours = m_patched.view(n_layers, seq)
    diff = float((ours - tl_out.double().cpu()).abs().max())
    effect = float((ours - m_corrupted).abs().max())
    return SweepRow(task.name, sweep, int(m_patched.numel()), engine_s, tl_s, floor_s, diff, effect)


HYPOTHESIS = """\
version: 1
name: peer
model: {model}
dataset: {{kind: file, path: tokens.pt}}
positions:
  early: {{range: [{lo}, {hi}]}}
  end: {{indices: [{end}]}}
claims:
  - id: P
    statement: The sweep's corruption (the engine and TL patch into this run).
    kind: activation_patching
    corruption: {{scheme: resample_tokens, positions: early, seed: {seed}}}
    patch: ["0.0"]
    patch_at: end
    positions: end
    metric: logprob
    threshold: {{at_least: 0.0}}
"""


def time_cli(task: Task, sweep: str, work: Path) -> tuple[float | None, str]:
    """Wall seconds of ``circuitcheck sweep`` on the same model, tokens and corruption, cold (a subprocess that
    imports, loads the model, runs and writes its reports); or None and why not."""
    folder = work / f"cli-{task.name}"
    folder.mkdir(exist_ok=True)
    torch.save({"tokens": task.tokens.cpu()}, folder / "tokens.pt")
    (folder / "peer.yaml").write_text(HYPOTHESIS.format(
        model=os.path.relpath(task.folder.resolve(), folder.resolve()), lo=task.corrupt_range[0],
        hi=task.corrupt_range[1], end=task.score_at, seed=CORRUPTION_SEED))
    cli = Path(sys.executable).parent / "circuitcheck"
    command = [str(cli), "sweep", str(folder / "peer.yaml"), "--corruption", "P", "--over", sweep, "--quiet",
               "--out", str(folder / "out")]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        return None, f"circuitcheck sweep exited {done.returncode}: {done.stderr.strip().splitlines()[:2]}"
    return seconds, " ".join(command)


def peak_memory(device: str) -> dict[str, float]:
    out = {"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if device == "cuda":
        out["cuda_max_allocated_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def run(shape: Shape, device: str, cli: bool, ioi: bool, work: Path, quick: bool = False) -> dict[str, Any]:
    rows: list[SweepRow] = []
    cli_rows: list[dict[str, Any]] = []
    tasks: list[Task] = []
    folder = gpt2_folder(shape, work / f"gpt2-{shape.n_layers}L")
    model = boot(folder, device)
    name = f"gpt2-shape-{shape.n_layers}L-{shape.n_heads}H-d{shape.d_model}-v{shape.vocab}"
    tasks.append(make_task(name, model, folder, shape.n_prompts, shape.seq, device))
    ioi_folder = ROOT / "models" / "ioi-mini"
    if ioi and (ioi_folder / "config.json").is_file():
        ioi_model = boot(ioi_folder, device)
        tasks.append(make_task("ioi-mini", ioi_model, ioi_folder, shape.n_prompts, shape.seq, device))
    elif ioi:
        print(f"skipping ioi-mini: {ioi_folder} holds no config.json (not trained yet)")
    for task in tasks:
        for sweep in ("heads", "resid"):
            row = compare(task, sweep)
            rows.append(row)
            print(f"{row.model:38s} {row.sweep:6s} {row.cells:5d} cells  engine {row.engine_s:7.2f}s  "
                  f"TL {row.tl_s:7.2f}s  floor {row.floor_s:7.2f}s  TL/engine {row.tl_over_engine:5.2f}  "
                  f"engine/floor {row.engine_over_floor:5.2f}  max|diff| {row.max_abs_diff:.2e}  "
                  f"max effect {row.max_effect:.2e}", flush=True)
            if cli and (sweep == "heads" or not quick):
                seconds, how = time_cli(task, sweep, work)
                cli_rows.append({"model": task.name, "sweep": sweep, "cli_s": seconds, "tl_s": row.tl_s,
                                 "command": how})
                shown = f"{seconds:.2f}s (TL in-process {row.tl_s:.2f}s)" if seconds is not None else f"failed: {how}"
                print(f"{'':38s} {sweep:6s} circuitcheck sweep (CLI, cold): {shown}", flush=True)
    head = rows[0]
    return {
        "tl_over_engine": head.tl_over_engine,
        "engine_over_floor": head.engine_over_floor,
        "max_abs_diff": max(r.max_abs_diff for r in rows),
        **peak_memory(device),
        "device": device,
        "threads": torch.get_num_threads(),
        "shape": asdict(shape),
        "rows": [asdict(r) | {"tl_over_engine": r.tl_over_engine, "engine_over_floor": r.engine_over_floor}
                 for r in rows],
        "cli": cli_rows,
        "agree": all(r.max_abs_diff <= AGREEMENT_ATOL for r in rows),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="4 layers, vocabulary 5000, 6 prompts of 8 tokens; the CLI timed on the heads sweep only")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--layers", type=int, default=None, help="override the number of layers")
    parser.add_argument("--vocab", type=int, default=None, help="vocabulary size (full: GPT-2's 50257)")
    parser.add_argument("--prompts", type=int, default=None, help="prompts (full: 20)")
    parser.add_argument("--seq", type=int, default=None, help="tokens per prompt (full: 15)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads for both sides and the CLI (default 1: on a CPU shared with other work, "
                             "two threads wait on each other and slow small passes by 10x)")
    parser.add_argument("--no-cli", dest="cli", action="store_false", help="skip timing the CLI subprocess")
    parser.add_argument("--no-ioi", dest="ioi", action="store_false", help="skip models/ioi-mini")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("--device cuda: no CUDA device here; use --device cpu", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)  # the CLI subprocess inherits it
    base = QUICK if args.quick else FULL
    shape = Shape(n_layers=args.layers or base.n_layers, vocab=args.vocab or base.vocab,
                  n_prompts=args.prompts or base.n_prompts, seq=args.seq or base.seq)
    with tempfile.TemporaryDirectory(prefix="peer-") as tmp:
        result = run(shape, args.device, args.cli, args.ioi, Path(tmp), args.quick)
    print(json.dumps(result))
    return 0 if result["agree"] else 1


if __name__ == "__main__":
    sys.exit(main())
