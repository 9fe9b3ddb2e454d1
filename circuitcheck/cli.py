"""``circuitcheck``: a thin shell over the library. Exit codes: 0 all claims passed,
1 a claim failed, 2 invalid input or an invalid run, 3 nothing failed but a claim was
inconclusive; never a traceback for bad input."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from circuitcheck.api import MAX_ROWS_HELP, non_negative_number, positive_number, positive_whole_number
from circuitcheck.errors import CircuitcheckError
from circuitcheck.report.progress import Tracker, progress_wanted

if TYPE_CHECKING:
    from circuitcheck.jobs.job import JobResult
    from circuitcheck.report.report import Report

EXIT_PASS, EXIT_FAIL, EXIT_INVALID, EXIT_INCONCLUSIVE, EXIT_INTERNAL = 0, 1, 2, 3, 70


def _err(message: str) -> None:
    print(message, file=sys.stderr)


@contextmanager
def _writing(what: str, fix: str | None = None) -> Iterator[None]:
    """A file that cannot be written is the user's to fix: one line, exit 2, not an internal error.

    With ``fix`` the block probes a folder (``err.filename``) before any work, and the message says what to pass.
    """
    try:
        yield
    except OSError as err:
        reason = err.strerror or err
        if fix is not None:
            raise CircuitcheckError(f"cannot write the {what} into {err.filename}: {reason}; {fix}") from None
        raise CircuitcheckError(f"{err.filename or what}: cannot write the {what}: {reason}") from None


def _argv(args: argparse.Namespace, *rest: str) -> list[str]:
    """The command as typed, for provenance (or a reconstruction of it when called as a library)."""
    if sys.argv[0].endswith("circuitcheck"):
        return ["circuitcheck", *sys.argv[1:]]
    return ["circuitcheck", args.command, *rest]


def cmd_validate(args: argparse.Namespace) -> int:
    from circuitcheck.spec.hypothesis import load_hypothesis
    from circuitcheck.spec.warnings import spec_warnings

    code = EXIT_PASS
    for path in args.files:
        try:
            spec, smap = load_hypothesis(Path(path))
        except CircuitcheckError as err:
            _err(str(err))
            code = EXIT_INVALID
            continue
        warnings = spec_warnings(spec, smap)  # what can be known without the model (its card read for its shape)
        for warning in warnings:
            _err(warning.text(smap))
        noted = f", {len(warnings)} warning(s)" if warnings else ""
        print(f"{path}: ok ({len(spec.claims)} claims, model {spec.model!r}{noted})")
    return code


def cmd_explain(args: argparse.Namespace) -> int:
    from circuitcheck.plan.circuits import describe_circuit
    from circuitcheck.plan.compile import compile_file
    from circuitcheck.plan.components import model_components
    from circuitcheck.zoo.options import LoadOptions, loading

    with Tracker(1, progress_wanted(args.quiet)) as tracker, tracker.step(f"compiling {args.file}"), \
            loading(LoadOptions(trust_bridge=args.trust_bridge)):
        plan = compile_file(Path(args.file), args.model)
    cfg = plan.loaded.model.cfg
    print(
        f"file: {plan.path}\n"
        f"model: {plan.loaded.name} ({plan.loaded.checkpoint}, sha256 {plan.loaded.checkpoint_sha256[:12]})"
    )
    print(
        f"  {cfg.n_layers} layer(s), {cfg.n_heads} head(s), d_model {cfg.d_model}; "
        f"components: {', '.join(map(str, model_components(plan.loaded.model)))}"
    )
    print(f"dataset: {plan.batch.n_seqs} sequences x {plan.batch.seq_len} positions; {dict(plan.batch.params)}")
    print("positions: " + ", ".join(f"{name} ({int(mask.sum())})" for name, mask in plan.masks.items()))
    for name, circuit in plan.circuits.items():
        print(f"\ncircuit {name}: " + "\n  ".join(describe_circuit(circuit, plan.source_map)))
    for claim in plan.claims:
        print(f"\n[{claim.claim_id}] {claim.kind}")
        for line in claim.describe:
            print(f"  - {line}")
    if plan.warnings:
        print("")
    for warning in plan.warnings:
        print(warning.text(plan.source_map))
    if args.hooks:
        from circuitcheck.plan.components import available_hooks

        print("\nhook names (forward order):\n  " + "\n  ".join(available_hooks(plan.loaded.model)))
    return EXIT_PASS


def _file_results(args: argparse.Namespace, argv: list[str], tracker: Tracker) -> Iterator[JobResult]:
    """Each file of ``run``/``baseline`` as a job on ``--executor``, results in file order."""
    from circuitcheck.api import check_files

    return check_files(
        args.files, args.model, max_rows=args.max_rows, resume=args.resume, memory_budget_gib=args.memory_budget,
        baseline=args.baseline or None, argv=argv, tracker=tracker, controls=args.controls, device=args.device,
        dtype=args.dtype, trust_bridge=args.trust_bridge, cache=args.cache, executor=args.executor,
        ray_address=args.ray_address,
    )


def _job_tracker(args: argparse.Namespace, n_jobs: int) -> Tracker:
    """One bar over the jobs (on an interactive terminal only): a local job is two steps (compile, run)."""
    from circuitcheck.jobs.executors import STEPS_PER_JOB

    return Tracker(STEPS_PER_JOB.get(args.executor, 1) * n_jobs, progress_wanted(args.quiet))


def _show_report(report: Report, args: argparse.Namespace, docs: list[dict]) -> int:
    from circuitcheck.jobs.cache import reused_from_cache

    docs.append(report.document)
    with _writing("reports"):
        written = report.write(args.report_dir)
    if not args.quiet:
        print(report)
        for claim in report.claims.values():
            if claim.as_expected is not True:
                print(f"  {claim.claim_id} {claim.verdict}: {claim.sentence}")
            elif claim.uninformative:
                allowed = " (allow_uninformative)" if claim.null is not None and claim.null.allowed else ""
                print(f"  {claim.claim_id} uninformative{allowed}: {claim.sentence}")
    reused = ", reused from cache" if reused_from_cache(report.document) else ""
    retried = ", retried: its first worker died" if "retried" in report.document["provenance"] else ""
    print(f"reports: {', '.join(map(str, written))} ({report.result.seconds:.1f}s{reused}{retried})")
    return report.exit_code


def cmd_run(args: argparse.Namespace) -> int:
    from circuitcheck.atomic import probe_writable

    with _writing("reports", "pass --report-dir with a writable folder"):
        probe_writable(Path(args.report_dir))  # before any model loads: fail in a second, not after the run
    if args.junit:
        with _writing("JUnit report", "pass --junit a path in a writable folder"):
            probe_writable(Path(args.junit).parent)
    argv = _argv(args, *args.files)
    codes: list[int] = []
    docs: list[dict] = []
    with _job_tracker(args, len(args.files)) as tracker:
        for ran in _file_results(args, argv, tracker):
            if ran.report is None:
                _err(str(ran.error))
                codes.append(EXIT_INVALID)
            else:
                codes.append(_show_report(ran.report, args, docs))
    if args.junit:
        from circuitcheck.report.junit import write_junit

        with _writing("JUnit report"):
            print(f"junit: {write_junit(docs, Path(args.junit))}")
    for worst in (EXIT_INVALID, EXIT_FAIL, EXIT_INCONCLUSIVE):
        if worst in codes:
            return worst
    return EXIT_PASS


def cmd_baseline(args: argparse.Namespace) -> int:
    from circuitcheck.atomic import probe_writable
    from circuitcheck.verdict.baseline import update_baseline

    with _writing("reports", "pass --report-dir with a writable folder"):
        probe_writable(Path(args.report_dir))  # before any model loads: fail in a second, not after the run
    with _writing("baseline", "pass --out a path in a writable folder"):
        probe_writable(Path(args.out).parent)
    docs: list[dict] = []
    with _job_tracker(args, len(args.files)) as tracker:
        for ran in _file_results(args, _argv(args, *args.files), tracker):
            if ran.report is None:
                raise CircuitcheckError(str(ran.error))
            _show_report(ran.report, args, docs)
    with _writing("baseline"):
        written = update_baseline(Path(args.out), docs)
    print(f"baseline: {written} ({sum(len(d['claims']) for d in docs)} claims)")
    return EXIT_PASS


def cmd_compare(args: argparse.Namespace) -> int:
    from circuitcheck.api import compare
    from circuitcheck.atomic import probe_writable

    with _writing("reports", "pass --report-dir with a writable folder"):
        probe_writable(Path(args.report_dir))  # before any model loads: fail in a second, not after the run
    n_models = len(args.model) or 2
    if args.series is not None and not args.model:  # the bar's length: the checkpoints the pattern names
        from circuitcheck.comparison.series import series_models

        n_models = len(series_models(args.series, Path.cwd())[0])
    with _job_tracker(args, n_models) as tracker:
        report = compare(
            Path(args.file),
            args.model,
            max_rows=args.max_rows,
            resume=args.resume,
            models_base=Path.cwd(),
            argv=_argv(args, args.file),
            tracker=tracker,
            min_effect=args.min_effect,
            controls=args.controls,
            device=args.device,
            dtype=args.dtype,
            trust_bridge=args.trust_bridge,
            executor=args.executor,
            ray_address=args.ray_address,
            series=args.series,
        )
    with _writing("reports"):
        written = report.write(args.report_dir)
    if not args.quiet:
        print(report)
    print(f"reports: {', '.join(map(str, written))}")
    for error in report.comparison.failed.values():
        _err(error)
    if report.comparison.failed:
        return EXIT_INVALID
    if args.fail_on_difference and report.differing:
        return EXIT_FAIL
    return EXIT_PASS


def cmd_sweep(args: argparse.Namespace) -> int:
    from circuitcheck.api import sweep
    from circuitcheck.atomic import probe_writable

    with _writing("sweep reports", "pass --out a writable folder"):
        probe_writable(Path(args.out))  # before any model loads
    with Tracker(1, progress_wanted(args.quiet)) as tracker:
        report = sweep(
            Path(args.file), args.corruption, args.over, metric=args.metric, positions=args.positions,
            top_k=args.top_k, out=args.out, write=False, model=args.model, max_rows=args.max_rows, resume=args.resume,
            argv=_argv(args, args.file), tracker=tracker,
        )
    with _writing("sweep reports"):
        written = report.write(Path(args.out))
    if not args.quiet:
        for cell in report.document["top"]:
            lo, hi = cell["lo"], cell["hi"]
            shown = "" if lo is None else f" [{lo:.3g}, {hi:.3g}]"
            print(f"  {cell['component']} at position {cell['position']}: {cell['estimate']:.3g}{shown}")
        for note in report.notes:
            print(f"  note: {note}")
    print(f"sweep: {', '.join(map(str, written))}")
    return EXIT_PASS


def _write_or_print(text: str, out: str | None, what: str) -> int:
    if out is None:
        sys.stdout.write(text)
        return EXIT_PASS
    from circuitcheck.atomic import write_atomic

    with _writing(what):
        write_atomic(Path(out), text)
    print(f"{what}: {out}", file=sys.stderr)
    return EXIT_PASS


def cmd_schema(args: argparse.Namespace) -> int:
    from circuitcheck.authoring import hypothesis_schema

    return _write_or_print(json.dumps(hypothesis_schema(), indent=2) + "\n", args.out, "schema")


def cmd_docs(args: argparse.Namespace) -> int:
    from circuitcheck.docs_reference import kinds_text, reference_text

    sys.stdout.write(reference_text(args.kind) if args.kind else kinds_text())
    return EXIT_PASS


def cmd_init(args: argparse.Namespace) -> int:
    from circuitcheck.authoring import scaffold
    from circuitcheck.zoo.load import load

    if args.out and Path(args.out).exists() and not args.force:
        raise CircuitcheckError(f"{args.out} exists; pass --force to overwrite it")
    if args.out:
        from circuitcheck.atomic import probe_writable

        with _writing("scaffold", "pass -o a path in a writable folder"):
            probe_writable(Path(args.out).parent)  # before the model loads
    return _write_or_print(scaffold(load(args.model, Path.cwd()), args.model), args.out, "scaffold")


def _engine_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--max-rows", "--max-batch", type=positive_whole_number, default=4096, help=MAX_ROWS_HELP)
    parser.add_argument(
        "--no-resume",
        dest="resume",
        action="store_false",
        help="run every intervention pass from the tokens instead of resuming from cached clean activations "
        "(slower; for checking the engine, or for a model whose blocks the resumed path does not mirror)",
    )
    parser.add_argument(
        "--controls", action="store_true",
        help="also run the null-model control: every claim re-run on re-initialised copies of the model (same "
        "architecture and data, seeded weights; the file's 'controls: {null_model: {n, seed}}', else n=3 from "
        "seed 0). A claim that passes on a copy is uninformative: capped at inconclusive unless it sets "
        "'allow_uninformative: true'. A file with 'controls:' runs it without the flag",
    )


TRUST_BRIDGE_HELP = (
    "run on a Hugging Face model even when its TransformerLens bridge does not reproduce the model's own "
    "forward on the load-time probe (by default a load error); the mismatch is recorded in the report"
)


def _model_options(parser: argparse.ArgumentParser) -> None:
    """Where and in what precision the model runs (the commands that run claims)."""
    from circuitcheck.zoo.options import DEVICES, DTYPES

    parser.add_argument("--device", default="cpu", metavar="|".join(DEVICES),
                        help="where the model runs (default cpu; auto: cuda if available, else mps, else cpu)")
    parser.add_argument("--dtype", default="float32", choices=DTYPES,
                        help="the model's precision (default float32); self-check tolerances scale with it")
    parser.add_argument("--trust-bridge", action="store_true", help=TRUST_BRIDGE_HELP)


def _executor_options(parser: argparse.ArgumentParser, cache: bool = True) -> None:
    """Where the (file, model) jobs run, and (``run``, ``baseline``) the result cache."""
    parser.add_argument(
        "--executor", choices=["local", "ray"], default="local",
        help="local (default): jobs one after another in this process; ray: each (file, model) job a Ray task "
        "(pip install 'circuitcheck[ray]'); reports are the same",
    )
    parser.add_argument(
        "--ray-address", default=None, metavar="ADDRESS",
        help="with --executor ray: join this running cluster (host:port of its head, or 'auto'); without it a "
        "local Ray starts with this machine's CPUs. Files and models must be at the same paths on every node",
    )
    if cache:
        parser.add_argument(
            "--cache", default=None, metavar="DIR",
            help="reuse a stored result when the file, checkpoint, dataset tokens, circuitcheck version and "
            "options are unchanged (the report says 'reused from cache'); run and store the others",
        )


def _memory_option(parser: argparse.ArgumentParser) -> None:
    """For the commands that run files one at a time (``compare`` runs with the default budget)."""
    parser.add_argument(
        "--memory-budget", type=positive_number, default=None, metavar="GIB",
        help="the most clean activations a run keeps, in GiB (default: 10%% of RAM); caches for resuming passes "
        "that do not fit are dropped (passes start from the tokens), activations the claims need that do not fit "
        "are an error",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="circuitcheck", description="Test circuit hypotheses written as YAML files.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for internal errors")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run hypothesis files and write reports")
    run.add_argument("files", nargs="+")
    run.add_argument(
        "--report-dir", default="reports",
        help="where <name>.md, <name>.json and <name>.html go (default: reports)",
    )
    run.add_argument(
        "--model",
        default=None,
        help="run against this model instead of the file's: a zoo name, or a model "
        "directory relative to the current directory (a file's own model: resolves against the file's folder)",
    )
    _engine_options(run)
    _memory_option(run)
    _executor_options(run)
    _model_options(run)
    run.add_argument("--quiet", action="store_true", help="print only the report paths and errors")
    run.add_argument("--junit", default=None, metavar="PATH", help="also write a JUnit XML report of every file run")
    run.add_argument(
        "--baseline", default=None, metavar="JSON", help="fail claims that regressed against this baseline"
    )

    base = sub.add_parser("baseline", help="run files and write (or update) a baseline of their estimates")
    base.add_argument("files", nargs="+")
    base.add_argument("--out", required=True, metavar="JSON", help="the baseline file to write or update")
    base.add_argument(
        "--report-dir", default="reports",
        help="where each file's <name>.md, <name>.json and <name>.html go (default: reports)",
    )
    base.add_argument("--model", default=None)
    _engine_options(base)
    _memory_option(base)
    _executor_options(base)
    _model_options(base)
    base.add_argument("--quiet", action="store_true")
    base.set_defaults(func=cmd_baseline, junit=None, baseline=None)
    run.set_defaults(func=cmd_run)

    validate = sub.add_parser("validate", help="check files without loading a model")
    validate.add_argument("files", nargs="+")
    validate.set_defaults(func=cmd_validate)

    explain = sub.add_parser("explain", help="print the compiled plan of a file")
    explain.add_argument("file")
    explain.add_argument("--model", default=None)
    explain.add_argument("--hooks", action="store_true", help="also list every hook name of the model")
    explain.add_argument("--quiet", action="store_true")
    explain.add_argument("--trust-bridge", action="store_true", help=TRUST_BRIDGE_HELP)
    explain.set_defaults(func=cmd_explain)

    compare = sub.add_parser("compare", help="run a file on several models and compare them claim by claim")
    compare.add_argument("file")
    compare.add_argument("--model", action="append", default=[], metavar="NAME",
                         help="a variant (zoo name, or model directory relative to the current directory); give two or "
                              "more, or list 'variants:' in the file (relative to its folder)")
    compare.add_argument("--series", default=None, metavar="DIR_OR_GLOB",
                         help="a checkpoint series instead of --model: a folder of model folders or a glob "
                         "(e.g. 'checkpoints/step-*'), ordered by training step; adds each claim's curve")
    compare.add_argument(
        "--report-dir", default="reports", help="where <name>-compare.{md,json,html} go (default: reports)"
    )
    _engine_options(compare)
    _executor_options(compare, cache=False)
    _model_options(compare)
    compare.add_argument("--quiet", action="store_true", help="print only the report paths and errors")
    compare.add_argument("--min-effect", type=non_negative_number, default=None, metavar="X",
                         help="the smallest difference that matters: mark a difference only when its interval "
                              "excludes zero and its size is at least X (a claim's own 'min_effect:' wins; "
                              "default 0: any difference that excludes zero)")
    compare.add_argument("--fail-on-difference", action="store_true",
                         help="exit 1 when a difference is marked (its interval excludes zero and its size is at "
                              "least the min effect): a CI check that variants agree")
    compare.set_defaults(func=cmd_compare)

    sweep = sub.add_parser(
        "sweep", help="patch every head/residual stream/MLP x position clean into a corrupted run; draft claims"
    )
    sweep.add_argument("file")
    sweep.add_argument("--corruption", required=True, metavar="NAME",
                       help="the id of a claim of the file whose corruption to use, or a corruption written inline: "
                            "'{scheme: resample_tokens, positions: SEL, seed: 5}'")
    sweep.add_argument("--over", choices=["heads", "resid", "mlp"], default="heads",
                       help="heads: blocks.L.attn.hook_z per head; resid: blocks.L.hook_resid_pre; mlp: "
                            "blocks.L.hook_mlp_out (default heads)")
    sweep.add_argument("--metric", default=None,
                       help="the metric scored (default: the named claim's; inline corruption: logprob)")
    sweep.add_argument("--positions", default=None, metavar="SEL",
                       help="the selection scored (default: the named claim's; inline corruption: all positions "
                            "with a next token)")
    sweep.add_argument("--top-k", type=positive_whole_number, default=5, metavar="K",
                       help="cells drafted as claims (default 5)")
    sweep.add_argument("--out", default="reports/sweeps",
                       help="where <name>-sweep-<over>.html/.json and <name>-draft.yaml go (default: reports/sweeps)")
    sweep.add_argument("--model", default=None, help="sweep this model instead of the file's (as for run)")
    sweep.add_argument("--max-rows", "--max-batch", type=positive_whole_number, default=4096, help=MAX_ROWS_HELP)
    sweep.add_argument("--no-resume", dest="resume", action="store_false",
                       help="run every pass from the tokens instead of resuming at the patched layer")
    sweep.add_argument("--quiet", action="store_true", help="print only the written paths and errors")
    sweep.set_defaults(func=cmd_sweep)

    schema = sub.add_parser("schema", help="print the JSON Schema of hypothesis files (for editors)")
    schema.add_argument("-o", "--out", default=None, metavar="PATH", help="write it here instead of stdout")
    schema.set_defaults(func=cmd_schema)

    docs = sub.add_parser(
        "docs", help="print a claim kind's reference: fields, formula, interval, example, traps (no KIND: list kinds)"
    )
    docs.add_argument(
        "kind", nargs="?", default=None, metavar="KIND",
        help="a claim kind, e.g. attention_mass (or a metric or dataset kind)",
    )
    docs.set_defaults(func=cmd_docs)

    init = sub.add_parser("init", help="print a commented hypothesis-file scaffold for a model")
    init.add_argument("--model", required=True, help="zoo name or model directory")
    init.add_argument("-o", "--out", default=None, metavar="PATH", help="write it here instead of stdout")
    init.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    init.set_defaults(func=cmd_init)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except CircuitcheckError as err:
        _err(str(err))
        return EXIT_INVALID
    except KeyboardInterrupt:
        _err("interrupted")
        return 130
    except Exception as err:
        if args.debug:
            raise
        _err(
            f"internal error: {type(err).__name__}: {err}\n"
            "  this is a circuitcheck bug; rerun with --debug and report it"
        )
        return EXIT_INTERNAL


def main_exit() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":
    main_exit()
