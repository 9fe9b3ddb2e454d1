"""Measure how often circuitcheck's 95% intervals contain the truth, through its own pipeline.

    python scripts/coverage_check.py [--quick] [--truth-n 20000] [--replicates 60]

For each estimator (claims taken from hypotheses/trigram.yaml, on the ``trigram`` zoo model), one run on a
large dataset gives the truth; then ``--replicates`` runs at each n of 30, 100 and 300 sequences, each on
its own dataset seed (never the truth's) and bootstrap seed, with the claim's threshold set at the truth.

Reported per estimator and n: coverage (fraction of intervals containing the truth; should be near 0.95),
passes at the truth (fraction of verdicts "pass" with the threshold at the truth; a one-sided miss, should
be at most about 2.5%), the mean estimate and its bias against the truth. The last line of stdout is JSON.
Progress goes to stderr. Measurement only: nothing here changes how intervals are computed.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import yaml

import circuitcheck

REPO = Path(__file__).resolve().parents[1]
SOURCE = REPO / "hypotheses" / "trigram.yaml"
SIZES = (30, 100, 300)
TRUTH_DATASET_SEED = 1_000_000
"""The truth's dataset seed; replicate r uses dataset seed ``REPLICATE_SEED_BASE + r`` (never this one)."""
REPLICATE_SEED_BASE = 1
TRUTH_BOOTSTRAP_SEED = 0


def estimators() -> dict[str, dict[str, Any]]:
    """Estimator name -> claim (a mapping shaped like the YAML), taken from hypotheses/trigram.yaml."""
    source = yaml.safe_load(SOURCE.read_text())
    by_id = {c["id"]: c for c in source["claims"]}
    chosen: dict[str, dict[str, Any]] = {
        # Jaccard of two position sets (association), over the interior positions.
        "jaccard:T1": by_id["T1"],
        # A ratio: mean-ablation relative drop of the probability of the correct token at Y.
        "relative_drop:T8": dict(by_id["T8"], metric="correct_prob"),
        # A mean: the probability of the correct token at Y with the head attending only to the previous token.
        "mean:prev-head": {
            "id": "prev-head",
            "statement": "With the head attending only to the previous token at Y, the model still completes trigrams.",
            "kind": "replacement",
            "replace": [{"component": "0.0", "with": "previous", "at": "Y"}],
            "positions": "Y",
            "metric": "correct_prob",
            "threshold": {"at_least": 0.5},
        },
        # A ratio: the fraction of the effect the circuit keeps (ablation sufficiency).
        "sufficiency:head-path": by_id["head-path-sufficiency"],
        # A ratio: activation patching's fraction recovered.
        "patching_recovery:X-values": by_id["X-patching-values"],
    }
    return {name: copy.deepcopy(claim) for name, claim in chosen.items()}


def build_spec(
    claims: dict[str, dict[str, Any]], n_seqs: int, dataset_seed: int, bootstrap_seed: int,
) -> dict[str, Any]:
    source = yaml.safe_load(SOURCE.read_text())
    spec = {k: v for k, v in source.items() if k != "claims"}
    spec["dataset"] = dict(source["dataset"], n_seqs=n_seqs, seed=dataset_seed)
    spec["statistics"] = {"seed": bootstrap_seed}
    spec["claims"] = list(claims.values())
    return spec


def at_truth(claim: dict[str, Any], truth: float) -> dict[str, Any]:
    """The claim with its threshold moved to the truth, in the claim's own direction."""
    direction = "at_most" if "at_most" in claim["threshold"] else "at_least"
    return dict(claim, threshold={direction: truth})


def run(claims: dict[str, dict[str, Any]], n_seqs: int, dataset_seed: int, bootstrap_seed: int) -> dict[str, Any]:
    report = circuitcheck.check(build_spec(claims, n_seqs, dataset_seed, bootstrap_seed))
    return {name: report.claims[claim["id"]] for name, claim in claims.items()}


def summarize(truth: float, rows: list[tuple[float, float, float, str]]) -> dict[str, float]:
    """Coverage, passes at the truth, mean estimate and bias over replicates (estimate, low, high, verdict)."""
    finite = [e for e, _, _, _ in rows if math.isfinite(e)]
    covered = sum(1 for _, lo, hi, _ in rows if math.isfinite(lo) and lo <= truth <= hi)
    mean = sum(finite) / len(finite) if finite else math.nan
    return {
        "coverage": covered / len(rows),
        "passes_at_truth": sum(v == "pass" for *_, v in rows) / len(rows),
        "mean_estimate": mean,
        "bias": mean - truth,
        "replicates": len(rows),
        "undefined": len(rows) - len(finite),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="truth on 10000 sequences, 60 replicates (~5 min, 2 cores)")
    ap.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)  # the test suite's smoke run
    ap.add_argument("--truth-n", type=int, default=None, help="sequences of the truth run (default 20000)")
    ap.add_argument("--replicates", type=int, default=None, help="replicate runs per n (default 60)")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    mode = "tiny" if args.tiny else "quick" if args.quick else "full"
    truth_n = args.truth_n or {"tiny": 500, "quick": 10000, "full": 20000}[mode]
    # 60 even when quick: with 30, one pass at the truth is 3.3%, too coarse to check a rate of at most 5%
    replicates = args.replicates or {"tiny": 3, "quick": 60, "full": 60}[mode]
    sizes = (30,) if args.tiny else SIZES
    claims = estimators()
    if args.tiny:
        claims = {k: claims[k] for k in ("jaccard:T1", "relative_drop:T8")}

    def say(text: str) -> None:
        print(f"[{time.perf_counter() - t0:6.1f}s] {text}", file=sys.stderr, flush=True)

    say(f"truth: {truth_n} sequences, dataset seed {TRUTH_DATASET_SEED}")
    truths = {name: v.estimate for name, v in run(claims, truth_n, TRUTH_DATASET_SEED, TRUTH_BOOTSTRAP_SEED).items()}
    for name, value in truths.items():
        say(f"  truth {name} = {value:.4f}")
    thresholded = {name: at_truth(claim, truths[name]) for name, claim in claims.items()}
    Row = tuple[float, float, float, str]
    rows: dict[str, dict[int, list[Row]]] = {name: {n: [] for n in sizes} for name in claims}
    for n in sizes:
        for r in range(replicates):
            seed = REPLICATE_SEED_BASE + r
            for name, v in run(thresholded, n, seed, seed).items():
                rows[name][n].append((v.estimate, v.ci_low, v.ci_high, v.verdict))
        say(f"n={n}: {replicates} replicates done")
    results = {name: {n: summarize(truths[name], rows[name][n]) for n in sizes} for name in claims}

    print(f"coverage of 95% intervals: truth on {truth_n} sequences, {replicates} replicates per n ({mode})")
    print(f"{'estimator':<28} {'truth':>8} {'n':>5} {'coverage':>9} {'pass@truth':>10} {'mean est':>9} {'bias':>9}")
    for name in claims:
        for n in sizes:
            s = results[name][n]
            print(f"{name:<28} {truths[name]:>8.4f} {n:>5} {s['coverage']:>9.3f} {s['passes_at_truth']:>10.3f} "
                  f"{s['mean_estimate']:>9.4f} {s['bias']:>+9.4f}" + (f"  ({s['undefined']} undefined)"
                                                                     if s["undefined"] else ""))

    def table(key: str) -> dict[str, dict[str, float | None]]:
        return {name: {str(n): (round(results[name][n][key], 4) if math.isfinite(results[name][n][key]) else None)
                       for n in sizes} for name in claims}

    print(json.dumps({
        "coverage": table("coverage"), "passes_at_truth": table("passes_at_truth"), "bias": table("bias"),
        "truth": {name: round(value, 6) for name, value in truths.items()},
        "replicates": replicates, "truth_n": truth_n, "mode": mode, "seconds": round(time.perf_counter() - t0, 1),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
