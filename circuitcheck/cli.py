"""``circuitcheck``: a thin shell over the library. Exit codes: 0 all claims passed,
1 a claim failed, 2 invalid input or an invalid run, 3 nothing failed but a claim was
inconclusive; never a traceback for bad input."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from circuitcheck.errors import CircuitcheckError

EXIT_PASS, EXIT_FAIL, EXIT_INVALID, EXIT_INCONCLUSIVE, EXIT_INTERNAL = 0, 1, 2, 3, 70


def _err(message: str) -> None:
    print(message, file=sys.stderr)


@contextmanager
def _stage(label: str, quiet: bool) -> Iterator[None]:
    """A spinner on a terminal while a slow stage runs; silent in CI logs."""
    if quiet or not sys.stderr.isatty():
        yield
        return
    from rich.console import Console

    with Console(stderr=True).status(label):
        yield


def cmd_validate(args: argparse.Namespace) -> int:
    from circuitcheck.spec.hypothesis import load_hypothesis

    code = EXIT_PASS
    for path in args.files:
        try:
            spec, _ = load_hypothesis(Path(path))
        except CircuitcheckError as err:
            _err(str(err))
            code = EXIT_INVALID
            continue
        print(f"{path}: ok ({len(spec.claims)} claims, model {spec.model!r})")
    return code


def cmd_explain(args: argparse.Namespace) -> int:
    from circuitcheck.plan.compile import compile_file
    from circuitcheck.plan.components import model_components

    with _stage(f"compiling {args.file}", args.quiet):
        plan = compile_file(Path(args.file), args.model)
    cfg = plan.loaded.model.cfg
    print(f"file: {plan.path}\nmodel: {plan.loaded.name} ({plan.loaded.checkpoint}, sha256 {plan.loaded.checkpoint_sha256[:12]})")
    print(f"  {cfg.n_layers} layer(s), {cfg.n_heads} head(s), d_model {cfg.d_model}; components: {', '.join(model_components(plan.loaded.model))}")
    print(f"dataset: {plan.batch.n_seqs} sequences x {plan.batch.seq_len} positions; {dict(plan.batch.params)}")
    print("positions: " + ", ".join(f"{name} ({int(mask.sum())})" for name, mask in plan.masks.items()))
    for claim in plan.claims:
        print(f"\n[{claim.claim_id}] {claim.kind}")
        for line in claim.describe:
            print(f"  - {line}")
    if args.hooks:
        from circuitcheck.plan.components import available_hooks

        print("\nhook names (forward order):\n  " + "\n  ".join(available_hooks(plan.loaded.model)))
    return EXIT_PASS


def _run_one(path: Path, args: argparse.Namespace, argv: list[str], docs: list[dict]) -> int:
    from circuitcheck.plan.compile import compile_file
    from circuitcheck.report.document import build_document
    from circuitcheck.report.render import terminal_table, write_reports
    from circuitcheck.run.execute import run_file

    with _stage(f"loading and compiling {path}", args.quiet):
        plan = compile_file(path, args.model)
    with _stage(f"running {len(plan.claims)} claims of {path}", args.quiet):
        result = run_file(plan, max_rows=args.max_rows)
    doc = build_document(result, argv)
    if args.baseline:
        from circuitcheck.verdict.baseline import apply_baseline

        apply_baseline(doc, Path(args.baseline), {c.id: c.regression_tolerance for c in plan.spec.claims})
    docs.append(doc)
    written = write_reports(doc, Path(args.report_dir))
    if not args.quiet:
        print(terminal_table(doc))
        for claim in doc["claims"]:
            if claim["as_expected"] is not True:
                print(f"  {claim['id']} {claim['verdict']}: {claim['sentence']}")
    print(f"reports: {', '.join(map(str, written))} ({result.seconds:.1f}s)")
    return int(doc["summary"]["exit_code"])


def cmd_run(args: argparse.Namespace) -> int:
    argv = ["circuitcheck", *sys.argv[1:]] if sys.argv[0].endswith("circuitcheck") else ["circuitcheck", "run", *args.files]
    codes: list[int] = []
    docs: list[dict] = []
    for path in args.files:
        try:
            codes.append(_run_one(Path(path), args, argv, docs))
        except CircuitcheckError as err:
            _err(str(err))
            codes.append(EXIT_INVALID)
    if args.junit:
        from circuitcheck.report.junit import write_junit

        print(f"junit: {write_junit(docs, Path(args.junit))}")
    for worst in (EXIT_INVALID, EXIT_FAIL, EXIT_INCONCLUSIVE):
        if worst in codes:
            return worst
    return EXIT_PASS


def cmd_baseline(args: argparse.Namespace) -> int:
    from circuitcheck.verdict.baseline import update_baseline

    docs: list[dict] = []
    for path in args.files:
        _run_one(Path(path), args, ["circuitcheck", "baseline", *args.files], docs)
    print(f"baseline: {update_baseline(Path(args.out), docs)} ({sum(len(d['claims']) for d in docs)} claims)")
    return EXIT_PASS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="circuitcheck", description="Test circuit hypotheses written as YAML files.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for internal errors")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run hypothesis files and write reports")
    run.add_argument("files", nargs="+")
    run.add_argument("--report-dir", default="reports", help="where <name>.md and <name>.json go (default: reports)")
    run.add_argument("--model", default=None, help="run against this model instead of the file's")
    run.add_argument("--max-rows", type=int, default=4096, help="largest stacked batch per forward pass")
    run.add_argument("--quiet", action="store_true", help="print only the report paths and errors")
    run.add_argument("--junit", default=None, metavar="PATH", help="also write a JUnit XML report of every file run")
    run.add_argument("--baseline", default=None, metavar="JSON", help="fail claims that regressed against this baseline")

    base = sub.add_parser("baseline", help="run files and write (or update) a baseline of their estimates")
    base.add_argument("files", nargs="+")
    base.add_argument("--out", required=True, metavar="JSON", help="the baseline file to write or update")
    base.add_argument("--report-dir", default="reports")
    base.add_argument("--model", default=None)
    base.add_argument("--max-rows", type=int, default=4096)
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
    explain.set_defaults(func=cmd_explain)
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
        _err(f"internal error: {type(err).__name__}: {err}\n  this is a circuitcheck bug; rerun with --debug and report it")
        return EXIT_INTERNAL


def main_exit() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":
    main_exit()
