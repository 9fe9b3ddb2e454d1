"""Benchmark the intervention engine against a naive TransformerLens loop and the floor.

    python benchmarks/run.py            # the full benchmark
    python benchmarks/run.py --quick    # <= 2 minutes on 2 cores
    python benchmarks/run.py --profile  # cProfile of the engine on one sweep

For each (model, workload) it times, in this one process: the clean run that
caches what the edits read; the engine (``run_variants``); a naive loop of one
forward pass per variant (``run_naive``); and the floor, one raw batched
forward pass over all the variants' stacked inputs, chunked as the engine
chunks, with no hooks. The engine must agree with the naive loop to 1e-5.
The last line printed is a JSON summary. BENCHMARKS.md explains the columns.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
ORIGINAL_ENV = dict(os.environ)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="small shapes, fewer repetitions (<= 2 minutes on 2 cores)")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    p.add_argument("--reps", type=int, default=None, help="timed repetitions (default 5 quick, 7 full; at least 5)")
    p.add_argument("--warmup", type=int, default=None, help="discarded warm-up rounds (default 1 quick, 2 full)")
    p.add_argument("--max-rows", type=int, default=None, help="rows per stacked pass (default: the engine's)")
    p.add_argument(
        "--no-resume", action="store_true", help="run_variants(resume=False): every pass starts from the tokens"
    )
    p.add_argument("--models", nargs="+", default=None, help="a subset of the models")
    p.add_argument(
        "--workloads", nargs="+", default=None,
        help="a subset of: sweep patching complements path baselines edges (edges: the 2- and 4-layer models only)",
    )
    p.add_argument("--no-edges-memory", action="store_true",
                   help="skip the peak-memory runs of the edges workload (subprocesses, two --max-rows values)")
    p.add_argument(
        "--omp-wait-policy",
        choices=["passive", "inherit"],
        default="passive",
        help="passive (default): set OMP_WAIT_POLICY=PASSIVE unless already set; inherit: leave the environment alone",
    )
    p.add_argument("--no-suite", action="store_true", help="skip the cold `circuitcheck run hypotheses/*.yaml` timing")
    p.add_argument("--json-out", type=Path, default=None, help="also write every row and the summary as JSON")
    p.add_argument("--profile", nargs="?", const="trigram", default=None, metavar="MODEL",
                   help="instead of benchmarking, cProfile the engine on one of MODEL's workloads (default trigram)")
    p.add_argument("--profile-workload", default="sweep", help="the workload --profile runs (default sweep)")
    args = p.parse_args(argv)
    if args.reps is not None and args.reps < 5:
        p.error("--reps must be at least 5")
    args.reps = args.reps or (5 if args.quick else 7)
    args.warmup = args.warmup if args.warmup is not None else (1 if args.quick else 2)
    return args


def engine_resumes() -> bool:
    """Whether this engine's run_variants can resume at a layer (engines before 2182a8c cannot)."""
    import inspect

    from circuitcheck.run.engine import run_variants

    return "resume" in inspect.signature(run_variants).parameters


def provenance() -> dict[str, Any]:
    """Versions, and which engine ran: its file's hash and where circuitcheck was imported from."""
    import hashlib
    from importlib.metadata import version

    from circuitcheck.run import engine

    head = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, check=False
    )
    return {
        "torch": version("torch"),
        "transformer_lens": version("transformer-lens"),
        "python": sys.version.split()[0],
        "git_head": head.stdout.strip() or None,
        "engine_sha256": hashlib.sha256(Path(engine.__file__).read_bytes()).hexdigest()[:12],
        "circuitcheck_from": str(Path(engine.__file__).parents[1]),
    }


def suite_cold_seconds() -> tuple[float, int]:
    """Wall time of a fresh ``circuitcheck run hypotheses/*.yaml`` from the repository root,
    in the caller's original environment (whatever OMP_WAIT_POLICY the user had)."""
    exe = Path(sys.executable).parent / "circuitcheck"
    files = sorted(str(p.relative_to(REPO)) for p in (REPO / "hypotheses").glob("*.yaml"))
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        proc = subprocess.run([str(exe), "run", *files, "--quiet", "--report-dir", tmp],
                              cwd=REPO, env=ORIGINAL_ENV, capture_output=True, text=True, check=False)
        seconds = time.perf_counter() - t
    if proc.returncode not in (0, 1, 3):  # 1 / 3: a claim failed / was inconclusive; the timing still counts
        print(f"WARNING: the suite exited {proc.returncode}:\n{proc.stderr[-2000:]}", file=sys.stderr)
    return seconds, proc.returncode


EDGES_MEMORY_MODEL = "native-4L-d128"
EDGES_MEMORY_ROWS = (128, 1024)
EDGES_MEMORY_COPIES = (1, 4)

_MEMORY_SCRIPT = """
import resource, sys, torch
sys.path.insert(0, sys.argv[1])
import workloads as wl
from circuitcheck.metrics import metrics
from circuitcheck.run.edges import EdgeAblation, run_circuits
from circuitcheck.run.readouts import Readouts, Want
torch.set_num_threads(int(sys.argv[2]))
model = wl.load_model(sys.argv[3])
tokens = wl.make_inputs(model, wl.SIZES[sys.argv[3]][1]).inputs["clean"]
circuits = wl.edge_circuits(model) * int(sys.argv[5])
# What run_file does: every circuit's logits reduced in the chunk loop to one metric at every scored position.
scored = torch.ones_like(tokens, dtype=torch.bool)
scored[:, -1] = False
targets = torch.cat([tokens[:, 1:], torch.full((len(tokens), 1), -1)], 1)
wants = {i: [Want(metrics.get("logprob"), scored)] for i in range(len(circuits))}
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
if int(sys.argv[4]):
    sink = Readouts(targets, wants, [], window=int(sys.argv[4]))
    run_circuits(model, tokens, circuits, EdgeAblation("mean"), max_rows=int(sys.argv[4]), sink=sink)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(len(circuits), before, after)
"""


def edges_memory(threads: int) -> list[dict[str, Any]]:
    """Peak resident memory (``ru_maxrss``) of one edges run in a fresh process, per ``max_rows`` and
    number of circuits (every edge's variant, repeated), on the full-size batch of the 4-layer model; each
    circuit's logits go to a :class:`~circuitcheck.run.readouts.Readouts` sink as in ``run_file``.
    ``max_rows`` 0 loads the model and runs nothing: the baseline the others' growth is measured from."""
    out = []
    for max_rows, copies in [(0, 1), *((m, c) for m in EDGES_MEMORY_ROWS for c in EDGES_MEMORY_COPIES)]:
        proc = subprocess.run(
            [sys.executable, "-c", _MEMORY_SCRIPT, str(REPO / "benchmarks"), str(threads), EDGES_MEMORY_MODEL,
             str(max_rows), str(copies)], cwd=REPO, capture_output=True, text=True, check=True,
        )
        n, before, after = (int(x) for x in proc.stdout.split()[-3:])
        out.append({"model": EDGES_MEMORY_MODEL, "max_rows": max_rows or None, "circuits": n,
                    "peak_mib": round(after / 1024, 1), "growth_mib": round((after - before) / 1024, 1)})
    return out


def memory_table(memory: list[dict[str, Any]]) -> str:
    from tabulate import tabulate

    head = ["model", "max_rows", "circuits", "peak MiB", "MiB over the loaded model"]
    body = [[m["model"], m["max_rows"] or "(load only)", m["circuits"], m["peak_mib"], m["growth_mib"]]
            for m in memory]
    return str(tabulate(body, head, tablefmt="github", disable_numparse=True))


def table(rows: list[Any]) -> str:
    from tabulate import tabulate

    head = ["model", "workload", "variants", "seqs x len", "clean ms", "engine ms", "naive ms", "floor ms",
            "engine/floor", "naive/engine", "max abs diff"]
    body = [[r.model, r.workload, r.n_variants, f"{r.n_seqs} x {r.seq}", f"{r.clean.median:.1f}", r.engine, r.naive,
             r.floor, f"{r.engine_over_floor:.2f}", f"{r.naive_over_engine:.2f}", f"{r.max_diff:.1e}"] for r in rows]
    return str(tabulate(body, head, tablefmt="github", disable_numparse=True))


def summary(rows: list[Any], args: argparse.Namespace, suite: tuple[float, int] | None, wall: float) -> dict[str, Any]:
    import torch

    sweeps_1l = [r.naive_over_engine for r in rows if r.workload in ("sweep", "patching") and r.n_layers == 1]
    # The headline medians stay over the node workloads, comparable with earlier runs; edges are reported apart.
    nodes = [r for r in rows if r.workload != "edges"] or rows
    edges = [r for r in rows if r.workload == "edges"]
    return {
        "engine_over_floor": round(statistics.median(r.engine_over_floor for r in nodes), 3),
        "naive_over_engine": round(statistics.median(r.naive_over_engine for r in nodes), 3),
        "edges_engine_over_floor": {r.model: round(r.engine_over_floor, 3) for r in edges} or None,
        "edges_naive_over_engine": {r.model: round(r.naive_over_engine, 3) for r in edges} or None,
        "naive_over_engine_1layer_sweeps": round(statistics.median(sweeps_1l), 3) if sweeps_1l else None,
        "suite_cold_seconds": round(suite[0], 2) if suite else None,
        "suite_exit": suite[1] if suite else None,
        "max_abs_diff": max(r.max_diff for r in rows),
        "exact_agreement": all(r.max_diff <= 1e-5 and r.max_effect > 0 for r in rows),
        "threads": torch.get_num_threads(),
        "quick": args.quick,
        "reps": args.reps,
        "warmup": args.warmup,
        "resume": engine_resumes() and not args.no_resume,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "cpu_count": os.cpu_count(),
        "loadavg_1min": round(os.getloadavg()[0], 2),
        "benchmark_seconds": round(wall, 1),
        **provenance(),
    }


def row_json(r: Any) -> dict[str, Any]:
    keys = ("model", "workload", "n_layers", "n_variants", "n_seqs", "seq", "max_diff", "max_effect")
    out = {k: getattr(r, k) for k in keys}
    for k in ("clean", "engine", "naive", "floor"):
        t = getattr(r, k)
        out[f"{k}_ms"] = {"median": t.median, "min": t.min, "max": t.max, "samples": list(t.samples)}
    return out | {"engine_over_floor": r.engine_over_floor, "naive_over_engine": r.naive_over_engine}


def benchmark(args: argparse.Namespace) -> int:
    import measure
    import workloads as wl

    from circuitcheck.plan.interventions import CLEAN
    from circuitcheck.run.engine import DEFAULT_MAX_ROWS

    sys.path.append(str(REPO))  # the naive edge reference lives in tests/edge_reference.py
    start = time.perf_counter()
    method = measure.Method(
        args.reps, args.warmup, args.max_rows or DEFAULT_MAX_ROWS, False if args.no_resume else None
    )
    rows = []
    for name in args.models or [*wl.NATIVE, *wl.ZOO]:
        model = wl.load_model(name)
        data = wl.make_inputs(model, wl.SIZES[name][0 if args.quick else 1])
        for workload in args.workloads or wl.WORKLOADS:
            if not wl.runs_on(workload, name):
                continue
            if workload == "edges":
                row = measure.measure_edges(name, model, wl.edge_circuits(model), data.inputs[CLEAN], method)
            else:
                variants = wl.build(workload, model, data, args.quick)
                row = measure.measure(name, workload, model, variants, data, wl.captures(model, variants), method)
            print(f"{name:16} {workload:12} {row.n_variants:4} variants  engine {row.engine} ms  naive {row.naive} ms  "
                  f"floor {row.floor} ms  max|diff| {row.max_diff:.1e}", file=sys.stderr, flush=True)
            rows.append(row)
    memory = None
    if "edges" in (args.workloads or wl.WORKLOADS) and not args.no_edges_memory:
        memory = edges_memory(args.threads)
        print(memory_table(memory), file=sys.stderr)
    suite = None if args.no_suite else suite_cold_seconds()
    print(table(rows))
    result = summary(rows, args, suite, time.perf_counter() - start) | {"edges_memory": memory}
    if args.json_out:
        args.json_out.write_text(json.dumps({"summary": result, "rows": [row_json(r) for r in rows]}, indent=2) + "\n")
    bad = [r for r in rows if r.max_diff > measure.AGREEMENT_ATOL or r.max_effect == 0.0]
    for r in bad:
        why = (f"the engine differs from the naive loop by {r.max_diff:.2e} (> {measure.AGREEMENT_ATOL:g})"
               if r.max_diff > measure.AGREEMENT_ATOL else "no edit changed the logits, so agreement proves nothing")
        print(f"FAIL: {r.model} / {r.workload}: {why}", file=sys.stderr)
    print(json.dumps(result))
    return 1 if bad else 0


def profile(args: argparse.Namespace) -> int:
    import cProfile
    import pstats

    import measure
    import torch
    import workloads as wl

    from circuitcheck.run.engine import DEFAULT_MAX_ROWS, Replacements, clean_run, run_variants

    max_rows = args.max_rows or DEFAULT_MAX_ROWS
    model = wl.load_model(args.profile)
    data = wl.make_inputs(model, wl.SIZES[args.profile][0 if args.quick else 1])
    variants = wl.build(args.profile_workload, model, data, args.quick)
    with torch.no_grad():
        _, cache = clean_run(model, data.inputs["clean"], wl.captures(model, variants), max_rows)

        options = {"resume": False} if args.no_resume else {}

        def engine() -> None:
            run_variants(model, variants, data, Replacements(cache, model, data.masks), max_rows=max_rows, **options)

        def per_call(fn: Any) -> float:
            return 1e3 * measure.timed(lambda: [fn() for _ in range(args.reps)])[0] / args.reps

        for _ in range(args.warmup):
            engine()
        plain = per_call(engine)
        floor = per_call(lambda: measure.floor_pass(model, data.inputs["clean"], len(variants), max_rows))
        prof = cProfile.Profile()
        profiled = per_call(lambda: prof.runcall(engine))
    print(
        f"engine on {args.profile} / {args.profile_workload}: "
        f"{len(variants)} variants x {tuple(data.inputs['clean'].shape)} tokens, "
        f"{torch.get_num_threads()} threads, mean of {args.reps} calls: engine {plain:.1f} ms, floor {floor:.1f} ms, "
        f"engine under cProfile {profiled:.1f} ms"
    )
    stats = pstats.Stats(prof, stream=sys.stdout).sort_stats("cumulative")
    stats.print_stats(15)
    print("circuitcheck's own functions (cumulative):")
    stats.print_stats(r"circuitcheck/run/", 15)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.omp_wait_policy == "passive":
        # Must be set before torch loads libgomp: on a shared machine, spinning OpenMP
        # workers fight the other processes for the cores (see BENCHMARKS.md).
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch
    import workloads as wl

    known = [*wl.NATIVE, *wl.ZOO]
    unknown = [m for m in (args.models or []) + ([args.profile] if args.profile else []) if m not in known]
    unknown += [w for w in (args.workloads or []) + [args.profile_workload] if w not in wl.WORKLOADS]
    if unknown:
        sys.exit(f"unknown model or workload {unknown}; models: {known}; workloads: {list(wl.WORKLOADS)}")
    if args.profile and args.profile_workload == "edges":
        sys.exit("--profile-workload edges: --profile runs run_variants workloads only")
    if args.no_resume and not engine_resumes():
        sys.exit("--no-resume: this engine's run_variants has no resume option (it never resumes)")
    torch.set_num_threads(args.threads)
    return profile(args) if args.profile else benchmark(args)


if __name__ == "__main__":
    sys.exit(main())
