"""Run the hypothesis suite under many bootstrap seeds and list every verdict that changes.

    python scripts/flake_check.py [FILES...] [--seeds 20]

Forward passes are deterministic, so each file runs once; only the bootstrap is
redrawn per seed. A claim whose verdict depends on the seed is a flaky CI check:
widen its sample or move its threshold away from the estimate.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

from circuitcheck.plan.compile import compile_file
from circuitcheck.run.execute import run_file
from circuitcheck.verdict.judge import judge

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("files", nargs="*", default=sorted(str(p) for p in (REPO / "hypotheses").glob("*.yaml")))
    ap.add_argument("--seeds", type=int, default=20)
    args = ap.parse_args()
    changed: dict[str, set[str]] = {}
    slowest = ("", 0.0)
    for file in args.files:
        t0 = time.perf_counter()
        result = run_file(compile_file(Path(file)))
        spec = result.plan.spec
        claims = {c.id: c for c in spec.claims}
        verdicts: dict[str, set[str]] = defaultdict(set)
        for seed in range(args.seeds):
            stats = spec.statistics.model_copy(update={"seed": seed})
            for r in result.claims:
                verdicts[r.claim_id].add(judge(claims[r.claim_id], r, stats).verdict)
        for claim_id, seen in verdicts.items():
            if len(seen) > 1:
                changed[f"{result.plan.name}:{claim_id}"] = seen
        for r in result.claims:
            if r.seconds > slowest[1]:
                slowest = (f"{result.plan.name}:{r.claim_id}", r.seconds)
        print(f"{file}: {len(verdicts)} claims x {args.seeds} seeds in {time.perf_counter() - t0:.1f}s")
    for name, seen in changed.items():
        print(f"FLAKY {name}: verdicts {sorted(seen)}")
    print(
        json.dumps(
            {
                "seeds": args.seeds,
                "flaky_claims": sorted(changed),
                "n_flaky": len(changed),
                "slowest_claim_scoring": {"claim": slowest[0], "seconds": round(slowest[1], 4)},
            }
        )
    )
    return 1 if changed else 0


if __name__ == "__main__":
    sys.exit(main())
