"""Peak memory of circuitcheck's own pipeline on large files (issue 18), one fresh process per workload.

    python benchmarks/memory.py --quick      # about a minute: trigram 2,000 sequences, a 2-layer GPT-2-shaped sweep
    python benchmarks/memory.py              # the issue's sizes (needs an engine whose memory is bounded by the chunk)
    python benchmarks/memory.py --workloads trigram-80000 --max-batch 1024 --json-out memory.json

Each workload is a hypothesis file written to a temporary folder and run the way ``circuitcheck run`` runs
it (``circuitcheck.cli.main``, reports written), in a child process that reports its own peak RSS
(``ru_maxrss``), so the figure is that workload's alone. Workloads:

- ``trigram-N``: claims T1 (association) and T8 (mean ablation) of hypotheses/trigram.yaml on N sequences.
- ``gpt2-sweep``: a seeded random TL-native model shaped like GPT-2 small (12 layers, 12 heads, d_model 768,
  d_mlp 3072, 50,257 tokens), saved as a model folder, and one resample-ablation claim per (head, position):
  144 heads x 15 positions = 2,160 claims, one engine variant each, on 20 sequences of 15 tokens. It runs
  twice, at ``--max-batch`` and at ``--tiny-max-batch``; the two reports' claims must be identical.

A child sets ``RLIMIT_AS`` to ``--rss-limit-gb`` before it imports torch, so a runaway workload dies with a
clear message instead of taking a shared machine down. The last line printed is JSON; BENCHMARKS.md
("Memory (issue 18)") explains it.
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
MB = 1e6
"""Every figure is in decimal megabytes (10^6 bytes); the targets' GB are 10^9 bytes."""

GPT2_SMALL = {"n_layers": 12, "d_model": 768, "d_head": 64, "n_heads": 12, "d_mlp": 3072, "d_vocab": 50257,
              "n_ctx": 1024, "act_fn": "gelu_new", "normalization_type": "LN", "seed": 0}
TINY_MODEL = GPT2_SMALL | {"n_layers": 1, "d_model": 64, "d_head": 16, "n_heads": 2, "d_mlp": 128, "d_vocab": 512,
                           "n_ctx": 32}
"""--tiny's stand-in for the GPT-2 shape: the same pipeline in seconds, for tests/test_memory_benchmark.py."""


@dataclass(frozen=True)
class Sweep:
    """A head x position sweep: every head of ``model`` (a config of ``shape``) at each of the first
    ``positions`` positions, on ``n_seqs`` random sequences of ``seq`` tokens."""

    model: dict[str, Any]
    shape: str = "gpt2"
    n_seqs: int = 20
    seq: int = 15
    positions: int = 15

    @property
    def n_claims(self) -> int:
        return int(self.model["n_layers"]) * int(self.model["n_heads"]) * self.positions

    @property
    def is_full(self) -> bool:
        return self.model == GPT2_SMALL and (self.n_seqs, self.seq, self.positions) == (20, 15, 15)

    @property
    def name(self) -> str:
        if self.is_full:
            return "gpt2-sweep"
        return f"{self.shape}-sweep-{self.model['n_layers']}L-{self.positions}pos-{self.n_seqs}seq"


@dataclass(frozen=True)
class Workload:
    name: str
    kind: str  # "trigram" or "sweep"
    max_batch: int
    n_seqs: int
    sweep: Sweep | None = None


TARGET_TRIGRAM = ("trigram-80000", 3000.0)
TARGET_SWEEP_MB = 4000.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="small sizes: trigram 2,000 sequences, a 2-layer sweep")
    p.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)  # the test's seconds-long configuration
    p.add_argument("--workloads", nargs="+", default=None, metavar="NAME",
                   help="trigram (every size), trigram-N (N sequences), sweep; default: all of this mode's")
    p.add_argument("--max-batch", type=int, default=4096, help="circuitcheck's --max-batch (default 4096)")
    p.add_argument("--tiny-max-batch", type=int, default=7,
                   help="the sweep's rerun that must give identical claims (default 7; 0 skips it)")
    p.add_argument("--sweep-layers", type=int, default=None, help="the sweep model's layers (default 12; 2 quick)")
    p.add_argument("--sweep-positions", type=int, default=None, help="positions swept (default 15; 2 quick)")
    p.add_argument("--sweep-seqs", type=int, default=20, help="the sweep's sequences (default 20)")
    p.add_argument("--rss-limit-gb", type=float, default=12.0,
                   help="RLIMIT_AS of each workload's process, in GiB (default 12; 0: no limit)")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads in each child (default torch's)")
    p.add_argument("--timeout-s", type=int, default=3600, help="wall-clock limit of one workload (default 3600)")
    p.add_argument("--json-out", type=Path, default=None, help="also write the summary and every workload as JSON")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)  # internal: run one workload (a JSON spec)
    args = p.parse_args(argv)
    if args.max_batch < 1 or args.tiny_max_batch < 0:
        p.error("--max-batch must be at least 1 and --tiny-max-batch at least 0")
    return args


# --- the parent: plan the workloads, write their files, run each in a fresh process ---------------------


def trigram_sizes(args: argparse.Namespace) -> list[int]:
    return [100] if args.tiny else [2000] if args.quick else [5000, 20000, 80000]


def sweep_of(args: argparse.Namespace) -> Sweep:
    if args.tiny:
        return Sweep(TINY_MODEL, "tiny", n_seqs=4, seq=8, positions=2)
    layers = args.sweep_layers or (2 if args.quick else 12)
    positions = args.sweep_positions or (2 if args.quick else 15)
    if not 1 <= positions <= 15 or not 1 <= layers <= 12:
        sys.exit("--sweep-positions must lie in 1..15 and --sweep-layers in 1..12")
    return Sweep(GPT2_SMALL | {"n_layers": layers}, n_seqs=args.sweep_seqs, positions=positions)


def plan(args: argparse.Namespace) -> list[Workload]:
    wanted = args.workloads or ["trigram", "sweep"]
    out: list[Workload] = []
    for name in wanted:
        if name == "trigram":
            out += [Workload(f"trigram-{n}", "trigram", args.max_batch, n) for n in trigram_sizes(args)]
        elif name.startswith("trigram-") and name.removeprefix("trigram-").isdigit():
            out.append(Workload(name, "trigram", args.max_batch, int(name.removeprefix("trigram-"))))
        elif name in ("sweep", "gpt2-sweep"):
            sweep = sweep_of(args)
            out.append(Workload(sweep.name, "sweep", args.max_batch, sweep.n_seqs, sweep))
            if args.tiny_max_batch:
                rerun = f"{sweep.name}@max-batch-{args.tiny_max_batch}"
                out.append(Workload(rerun, "sweep", args.tiny_max_batch, sweep.n_seqs, sweep))
        else:
            sys.exit(f"unknown workload {name!r}: expected trigram, trigram-N or sweep")
    return out


def trigram_file(folder: Path, n_seqs: int) -> Path:
    """hypotheses/trigram.yaml with its dataset resized and only claims T1 and T8 kept."""
    spec = yaml.safe_load((REPO / "hypotheses" / "trigram.yaml").read_text())
    spec["name"] = f"trigram-{n_seqs}"
    spec["model"] = str(REPO / "models" / "trigram")  # absolute: the file lives in a temporary folder
    spec["dataset"]["n_seqs"] = n_seqs
    spec["claims"] = [c for c in spec["claims"] if c["id"] in ("T1", "T8")]
    path = folder / f"trigram-{n_seqs}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def sweep_claim(layer: int, head: int, pos: int, seq: int) -> dict[str, Any]:
    """Resample head ``layer.head`` at one position: one engine variant, as the ``sweep`` workload of run.py."""
    claim = {
        "id": f"h{layer}.{head}-p{pos}", "statement": f"head {layer}.{head} at position {pos} matters",
        "kind": "ablation", "mode": "necessity", "components": [f"{layer}.{head}"], "method": "resample",
        "resample_seed": 0, "ablate_at": f"p{pos}", "positions": "all", "metric": "logprob",
        "effect": "absolute_drop", "threshold": {"at_least": 0.0},
    }
    if pos == seq - 1:  # the 15 x 15 sweep includes the last position, which no scored position reads
        claim |= {"allow_vacuous": True,
                  "vacuous_reason": "a memory benchmark of the issue's 2,160 variants, not a finding"}
    return claim


def sweep_file(folder: Path, sweep: Sweep, model_dir: Path, tokens: Path) -> Path:
    cfg = sweep.model
    claims = [sweep_claim(layer, head, pos, sweep.seq) for layer in range(int(cfg["n_layers"]))
              for head in range(int(cfg["n_heads"])) for pos in range(sweep.positions)]
    spec = {
        "version": 1, "name": sweep.name, "model": str(model_dir),
        "dataset": {"kind": "file", "path": str(tokens)},
        "positions": {f"p{j}": {"indices": [j]} for j in range(sweep.positions)},
        "claims": claims,
    }
    path = folder / f"{sweep.name}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def child_env() -> dict[str, str]:
    # Spinning OpenMP workers fight other processes for the cores on a shared machine (see BENCHMARKS.md).
    return dict(os.environ) | {"OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}


def run_child(spec: dict[str, Any], timeout_s: int) -> tuple[dict[str, Any] | None, str, float]:
    """Run one child; its JSON (None if it printed none), the tail of its stderr, and its wall time."""
    start = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], cwd=REPO, env=child_env(),
                              capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        return None, f"timed out after {timeout_s} s", time.perf_counter() - start
    wall = time.perf_counter() - start
    lines = proc.stdout.strip().splitlines()
    found = json.loads(lines[-1]) if lines and lines[-1].startswith("{") else None
    return found, exit_reason(proc.returncode, proc.stderr), wall


def exit_reason(code: int, stderr: str) -> str:
    if code == 0:
        return ""
    if code < 0:  # a signal: SIGKILL from outside is most often the kernel's out-of-memory killer
        oom = " (the kernel's out-of-memory killer?)" if code == -9 else ""
        return f"killed by signal {-code}{oom}: " + stderr.strip()[-500:]
    return f"exit {code}: " + stderr.strip()[-1500:]


def prepare_sweep(folder: Path, sweep: Sweep, args: argparse.Namespace) -> tuple[Path, Path]:
    """Build the seeded random model and the token file, in a child (the parent never imports torch)."""
    model_dir, tokens = folder / f"model-{sweep.name}", folder / f"tokens-{sweep.name}.safetensors"
    spec = {"task": "prepare", "model": sweep.model, "model_dir": str(model_dir), "tokens": str(tokens),
            "n_seqs": sweep.n_seqs, "seq": sweep.seq}
    found, why, wall = run_child(spec, args.timeout_s)
    if found is None or why:
        sys.exit(f"FAIL: building the {sweep.name} model: {why or 'no output'}")
    print(f"built {sweep.name}'s model ({found['n_params'] / 1e6:.1f} M parameters) in {wall:.1f} s",
          file=sys.stderr, flush=True)
    return model_dir, tokens


def hypothesis_files(folder: Path, workloads: list[Workload], args: argparse.Namespace) -> dict[str, Path]:
    files: dict[str, Path] = {}
    prepared: dict[str, Path] = {}
    for w in workloads:
        if w.kind == "trigram":
            files[w.name] = trigram_file(folder, w.n_seqs)
            continue
        assert w.sweep is not None
        if w.sweep.name not in prepared:
            prepared[w.sweep.name] = sweep_file(folder, w.sweep, *prepare_sweep(folder, w.sweep, args))
        files[w.name] = prepared[w.sweep.name]
    return files


def limit_bytes(args: argparse.Namespace) -> int | None:
    return int(args.rss_limit_gb * 2**30) if args.rss_limit_gb > 0 else None


def measure(w: Workload, path: Path, folder: Path, args: argparse.Namespace) -> dict[str, Any]:
    spec = {"task": "run", "file": str(path), "max_batch": w.max_batch, "report_dir": str(folder / f"reports-{w.name}"),
            "limit_bytes": limit_bytes(args), "threads": args.threads}
    found, why, wall = run_child(spec, args.timeout_s)
    row: dict[str, Any] = {"workload": w.name, "kind": w.kind, "n_seqs": w.n_seqs, "max_batch": w.max_batch,
                           "wall_s": round(wall, 1)}
    if w.sweep is not None:
        row |= {"n_claims": w.sweep.n_claims, "n_layers": w.sweep.model["n_layers"], "positions": w.sweep.positions,
                "seq": w.sweep.seq}
    row |= found or {}
    row["ok"] = found is not None and not why and "error" not in row
    if not row["ok"]:
        row["error"] = failure(row.get("error"), why, args)
    return row


def failure(error: str | None, why: str, args: argparse.Namespace) -> str:
    """What went wrong, led by the cause when it was the memory cap (the CLI reports it as an internal error)."""
    text = " ".join("; ".join(part for part in (error, why) if part).split()) or "the workload printed no result"
    if "allocate" in text or "MemoryError" in text or "out of memory" in text:
        return f"out of memory under the {args.rss_limit_gb:g} GiB cap (--rss-limit-gb): {text}"
    return text


def describe(row: dict[str, Any]) -> str:
    if not row["ok"]:
        return f"FAIL: {row['workload']}: {row['error']}"
    cuda = row.get("cuda_max_allocated_mb")
    gpu = f"  cuda max allocated {cuda:.0f} MB" if cuda is not None else ""
    return (f"{row['workload']:34} peak RSS {row['peak_rss_mb']:8.0f} MB "
            f"(after compiling {row['compile_rss_mb']:.0f} MB){gpu}  "
            f"wall {row['wall_s']:.1f} s (compile {row['compile_s']:.1f} s, run {row['run_s']:.1f} s)")


def rerun_pairs(rows: list[dict[str, Any]]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(first run, rerun at the tiny --max-batch) for each sweep where both finished: a failed run is
    reported as a failure, not as a difference."""
    by_name = {r["workload"]: r for r in rows}
    pairs = []
    for row in rows:
        first = by_name.get(row["workload"].split("@")[0]) if "@" in row["workload"] else None
        if first is not None and row["ok"] and first["ok"]:
            pairs.append((first, row))
    return pairs


def identical_claims(rows: list[dict[str, Any]]) -> bool | None:
    """Whether every sweep's rerun reported exactly the same claims (None: no rerun to compare)."""
    pairs = rerun_pairs(rows)
    return all(a["claims_sha256"] == b["claims_sha256"] for a, b in pairs) if pairs else None


def largest_difference(rows: list[dict[str, Any]]) -> float | None:
    """The largest |difference| of a claim's estimate or interval end between a sweep and its rerun."""
    pairs = rerun_pairs(rows)
    diffs = [gap(x, y) for a, b in pairs for claim, numbers in a["claims"].items()
             for x, y in zip(numbers, b["claims"].get(claim, [None] * 3), strict=True)]
    return max(diffs, default=0.0) if pairs else None


def gap(x: float | None, y: float | None) -> float:
    """|x - y|, with two NaNs (undefined estimates) or two Nones equal, and anything else unmatched infinitely far."""
    if x == y or (x is None and y is None) or (x is not None and y is not None and x != x and y != y):
        return 0.0
    if x is None or y is None or x != x or y != y:
        return float("inf")
    return abs(x - y)


def targets_met(rows: list[dict[str, Any]], identical: bool | None, tiny_max_batch: int) -> dict[str, bool | None]:
    """Each target of the issue: met, not met, or None where its workload did not run at the issue's size."""
    by_name = {r["workload"]: r for r in rows}

    def under(name: str, limit_mb: float) -> bool | None:
        row = by_name.get(name)
        return None if row is None else bool(row["ok"] and row["peak_rss_mb"] <= limit_mb)

    full_rerun = by_name.get(f"gpt2-sweep@max-batch-{tiny_max_batch}") if tiny_max_batch else None
    return {
        "trigram-80000 peak RSS <= 3 GB": under(*TARGET_TRIGRAM),
        "gpt2-sweep peak RSS <= 4 GB (CPU)": under("gpt2-sweep", TARGET_SWEEP_MB),
        "gpt2-sweep identical at a tiny --max-batch": identical if full_rerun is not None else None,
    }


def summary(rows: list[dict[str, Any]], args: argparse.Namespace, wall: float) -> dict[str, Any]:
    identical = identical_claims(rows)
    met = targets_met(rows, identical, args.tiny_max_batch)
    return {
        "peak_rss_mb": {r["workload"]: r.get("peak_rss_mb") for r in rows},
        "cuda_max_allocated_mb": {r["workload"]: r.get("cuda_max_allocated_mb") for r in rows},
        "wall_s": {r["workload"]: r["wall_s"] for r in rows},
        "ok": {r["workload"]: r["ok"] for r in rows},
        "sweep_identical_with_tiny_max_batch": identical,
        "sweep_max_abs_difference": largest_difference(rows),
        "targets": {"trigram-80000 peak RSS (MB)": TARGET_TRIGRAM[1], "gpt2-sweep peak RSS (MB, CPU)": TARGET_SWEEP_MB},
        "targets_met": met,
        "mode": "tiny" if args.tiny else "quick" if args.quick else "full",
        "max_batch": args.max_batch,
        "tiny_max_batch": args.tiny_max_batch,
        "rss_limit_gb": args.rss_limit_gb,
        "cpu_count": os.cpu_count(),
        "loadavg_1min": round(os.getloadavg()[0], 2),
        "benchmark_seconds": round(wall, 1),
        "git_head": git_head(),
    }


def git_head() -> str | None:
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                          check=False)
    return head.stdout.strip() or None


def benchmark(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    workloads = plan(args)
    rows = []
    with tempfile.TemporaryDirectory(prefix="circuitcheck-memory-") as tmp:
        folder = Path(tmp)
        files = hypothesis_files(folder, workloads, args)
        for w in workloads:
            row = measure(w, files[w.name], folder, args)
            print(describe(row), file=sys.stderr, flush=True)
            rows.append(row)
    result = summary(rows, args, time.perf_counter() - start)
    for target, met in result["targets_met"].items():
        shown = "not run at this size" if met is None else "met" if met else "NOT MET"
        print(f"target {target}: {shown}", file=sys.stderr)
    if result["sweep_identical_with_tiny_max_batch"] is False:
        print(f"NOT IDENTICAL: the sweep's claims differ between --max-batch {args.max_batch} and "
              f"{args.tiny_max_batch} (largest |difference| of an estimate or interval end: "
              f"{result['sweep_max_abs_difference']:.3g})", file=sys.stderr)
    if args.json_out:
        detail = [{k: v for k, v in r.items() if k != "claims"} for r in rows]
        args.json_out.write_text(json.dumps({"summary": result, "workloads": detail}, indent=2) + "\n")
    print(json.dumps(result))
    # A workload that did not finish fails the benchmark; a missed target is a measurement, printed above.
    return 0 if all(r["ok"] for r in rows) else 1


# --- a child: one workload, in its own process ---------------------------------------------------------


def guard_memory(limit: int | None) -> str:
    """Cap this process's address space before torch loads, so a runaway allocation fails here, not the machine.

    A visible GPU gets no cap: CUDA reserves far more address space than it uses, so RLIMIT_AS would break it."""
    if limit is None:
        return "none"
    if Path("/dev/nvidiactl").exists():
        return "none (a GPU is visible: RLIMIT_AS would break CUDA)"
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = limit if hard == resource.RLIM_INFINITY else min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    return f"RLIMIT_AS {cap / 2**30:.1f} GiB"


def peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / MB, 1)  # ru_maxrss is KiB on Linux


def vm_peak_mb() -> float | None:
    """The address-space peak (VmPeak): what RLIMIT_AS caps, to size --rss-limit-gb against."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmPeak:"):
            return round(int(line.split()[1]) * 1024 / MB, 1)
    return None


def claims_digest(report_json: Path) -> tuple[str, dict[str, list[float]]]:
    """A hash of every claim's verdict, estimate, interval and details (equal hashes: identical results), and
    each claim's estimate and interval, to say how far apart two runs are when the hashes differ."""
    import hashlib

    doc = json.loads(report_json.read_text())
    keep = ("id", "verdict", "estimate", "ci_low", "ci_high", "details")
    claims = [{k: c.get(k) for k in keep} for c in doc["claims"]]
    numbers = {c["id"]: [c["estimate"], c["ci_low"], c["ci_high"]] for c in claims}
    return hashlib.sha256(json.dumps(claims, sort_keys=True).encode()).hexdigest(), numbers


def child_run(spec: dict[str, Any]) -> dict[str, Any]:
    guard = guard_memory(spec["limit_bytes"])
    import torch

    from circuitcheck import cli
    from circuitcheck.plan.compile import compile_file

    if spec["threads"]:
        torch.set_num_threads(spec["threads"])
    start = time.perf_counter()
    compiled = compile_file(Path(spec["file"]))  # alone first, to see what loading and data cost before any run
    compile_s, compile_rss, name = time.perf_counter() - start, peak_rss_mb(), compiled.name
    del compiled
    start = time.perf_counter()
    code = cli.main(["run", spec["file"], "--max-batch", str(spec["max_batch"]), "--quiet",
                     "--report-dir", spec["report_dir"]])
    run_s = time.perf_counter() - start
    if code not in (0, 1, 3):  # 1 / 3: a claim failed / was inconclusive; the measurement still counts
        return {"error": f"circuitcheck run exited {code} at peak RSS {peak_rss_mb():.0f} MB ({guard})"}
    digest, numbers = claims_digest(Path(spec["report_dir"]) / f"{name}.json")
    cuda = torch.cuda.max_memory_allocated() / MB if torch.cuda.is_available() else None
    return {"peak_rss_mb": peak_rss_mb(), "compile_rss_mb": compile_rss, "vm_peak_mb": vm_peak_mb(),
            "cuda_max_allocated_mb": cuda, "compile_s": round(compile_s, 1), "run_s": round(run_s, 1),
            "exit_code": code, "claims_sha256": digest, "n_claims_reported": len(numbers), "claims": numbers,
            "guard": guard, "threads": torch.get_num_threads()}


def child_prepare(spec: dict[str, Any]) -> dict[str, Any]:
    """Save a seeded random TL-native model as a zoo folder, and seeded random tokens as a token file."""
    import torch
    from safetensors.torch import save_file

    from circuitcheck.zoo.build import build_bridge

    model = build_bridge(spec["model"])
    state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    folder = Path(spec["model_dir"])
    folder.mkdir(parents=True)
    save_file(state, str(folder / "model.safetensors"))
    card = {"name": folder.name, "format": "tl-native", "checkpoint": "model.safetensors", "config": spec["model"]}
    (folder / "card.json").write_text(json.dumps(card, indent=2) + "\n")
    gen = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, int(spec["model"]["d_vocab"]), (spec["n_seqs"], spec["seq"]), generator=gen)
    save_file({"tokens": tokens}, spec["tokens"])
    return {"n_params": sum(v.numel() for v in state.values())}


def child(spec: dict[str, Any]) -> int:
    try:
        found = child_prepare(spec) if spec["task"] == "prepare" else child_run(spec)
    except MemoryError:
        found = {"error": f"MemoryError at peak RSS {peak_rss_mb():.0f} MB"}
    except RuntimeError as err:
        if "allocate" not in str(err):
            raise
        found = {"error": f"{str(err).splitlines()[0][:300]} (at peak RSS {peak_rss_mb():.0f} MB)"}
    print(json.dumps(found), flush=True)
    return 3 if "error" in found else 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child is not None:
        return child(json.loads(args.child))
    return benchmark(args)


if __name__ == "__main__":
    sys.exit(main())
