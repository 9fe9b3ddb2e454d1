"""Warnings: numbers that cannot mean anything, though the claim is valid and runs.

A warning does not stop a file; it is shown by ``validate`` (where it can be known without the model),
on the terminal after ``run``, and in every report (a ``warnings`` list per claim in the JSON). Each
names the claim, where in the file, what is wrong and a fix. The rules:

``random-pool``
    A random baseline whose pool cannot reach the claim's ``alpha``. With ``n`` draws of circuits of
    size ``k`` from a pool of ``N`` components there are only ``C(N, k)`` distinct random circuits, and
    a draw that is the claimed circuit itself scores exactly as well, so it counts against the claim:
    the smallest p-value possible is ``(1 + m) / (1 + n)``, ``m`` the draws equal to the claim's own
    circuit (exact when the file compiles; expected, ``n / C(N, k)``, at ``validate``, read from the
    model card). Holm's adjustment only raises it.
``zero-by-construction``
    A share that is zero whatever the model does: ``pos_embed`` under ``dla_share``'s
    ``centering: batch_mean`` (the same in every sequence, so its centred attribution is exactly 0).
``uncalibrated-scale``
    A threshold on a scale whose meaning depends on the matrices' shapes: ``composition`` with
    ``scale: raw``; ``z`` and ``relative_to_max`` read the same on any model.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from circuitcheck.spec.components import Hook, PosEmbed
from circuitcheck.spec.vacuity import ModelFacts, card_facts, expand
from circuitcheck.spec.yaml_source import SourceMap

Path_ = tuple[str | int, ...]


@dataclass(frozen=True)
class ClaimWarning:
    """A number of claim ``claim_id`` that cannot mean anything: the ``rule``, where (a spec ``path``), why, a fix."""

    claim_id: str
    rule: str
    path: Path_
    message: str
    fix: str

    def text(self, smap: SourceMap) -> str:
        """``file:line:col: warning: claims.0.random_baseline: ...`` and a fix line, as errors are shown."""
        path = smap.written(self.path)
        return (f"{smap.locate(path)}: warning: {'.'.join(map(str, path))}: {self.message} (rule {self.rule})\n"
                f"  fix: {self.fix}")

    def shown(self, smap: SourceMap) -> dict[str, str]:
        """The report's form: ``{rule, where, path, message, fix}``."""
        path = smap.written(self.path)
        return {"rule": self.rule, "where": str(smap.locate(path)), "path": ".".join(map(str, path)),
                "message": self.message, "fix": self.fix}


def smallest_p_value(n: int, own_draws: float) -> float:
    """The smallest p-value ``(1 + #at least as good) / (1 + n)`` can take when ``own_draws`` of the ``n``
    random circuits are the claimed one (they tie with it, so they always count)."""
    return (1.0 + own_draws) / (1.0 + n)


def draws_needed(alpha: float, distinct: int) -> int | None:
    """The fewest draws whose expected smallest p-value is below ``alpha`` (``n / distinct`` of them the claimed
    circuit); None when no number of draws gets there (``1 / distinct >= alpha``)."""
    if 1.0 / distinct >= alpha:
        return None
    return math.floor((1.0 - alpha) / (alpha - 1.0 / distinct)) + 1


def random_pool_warning(
    claim_id: str, path: Path_, *, n: int, alpha: float | None, pool: Sequence[str], size: int,
    own_draws: int | None = None, what: str = "component",
) -> ClaimWarning | None:
    """The ``random-pool`` warning of a random baseline of ``n`` circuits of ``size`` drawn from ``pool``, or None
    when ``alpha`` is reachable (or not set). ``own_draws``: how many draws are the claimed circuit (exact, from
    the seeded draws); by default the expected number, ``n / C(len(pool), size)``."""
    if alpha is None or not 0 < size < len(pool):
        return None
    distinct = math.comb(len(pool), size)
    own = n / distinct if own_draws is None else own_draws
    p_min = smallest_p_value(n, own)
    if p_min < alpha:
        return None
    shown = ", ".join(pool) if len(pool) <= 12 else f"{', '.join(pool[:12])}, ..."
    counted = (f"{own_draws} of the {n} draws are" if own_draws is not None
               else f"about {own:.3g} of the {n} draws are expected to be")
    message = (
        f"alpha {alpha:g} cannot be reached: the random circuits are {size} of a pool of {len(pool)} {what}s "
        f"({shown}), so there are only {distinct} distinct ones; {counted} the claimed circuit itself, which scores "
        f"exactly as well, so the smallest p-value possible is (1 + {own:.3g}) / (1 + {n}) = {p_min:.3g} >= {alpha:g} "
        "(Holm's adjustment only raises it); a claim that clears its threshold would fail on the p-value alone"
    )
    needed = draws_needed(alpha, distinct)
    fix = (f"raise 'n' to at least {needed}" if needed is not None
           else f"no number of draws can: {distinct} distinct circuits allow p >= 1/{distinct}; drop 'alpha' "
                "(the p-value is still reported), or test a larger circuit or an edge-level claim "
                "(localization's random_baseline draws edges)")
    return ClaimWarning(claim_id, "random-pool", path + ("alpha",), message, fix)


def _ablation_pool(claim: Any, path: Path_, facts: ModelFacts) -> ClaimWarning | None:
    rb = claim.random_baseline
    if any(isinstance(c, Hook) for c in claim.components):  # a hook's site is not one of the pool's
        return None
    pool = facts.components()
    size = len(expand(list(claim.components), facts) & set(pool))
    return random_pool_warning(claim.id, path + ("random_baseline",), n=rb.n, alpha=rb.alpha,
                               pool=[str(c) for c in pool], size=size)


def claim_warnings(claim: Any, path: Path_, facts: ModelFacts | None) -> list[ClaimWarning]:
    """The warnings of one validated claim at ``path``; ``facts``: the model's shape, if known (else the
    rules that need it are left to compile time)."""
    found: list[ClaimWarning] = []
    kind = getattr(claim, "kind", None)
    if kind == "ablation" and getattr(claim, "random_baseline", None) is not None and facts is not None:
        pool = _ablation_pool(claim, path, facts)
        found += [pool] if pool is not None else []
    if kind == "dla_share" and getattr(claim, "centering", None) == "batch_mean":
        for i, component in enumerate(claim.components):
            if isinstance(component, PosEmbed):
                found.append(ClaimWarning(
                    claim.id, "zero-by-construction", path + ("components", i),
                    "pos_embed's share is 0 by construction: with centering: batch_mean each component's mean over "
                    "the sequences is subtracted position by position, and pos_embed is the same in every sequence",
                    "remove pos_embed from 'components' (it adds nothing), or use 'centering: none' to count it",
                ))
    if kind == "composition" and getattr(claim, "scale", None) == "raw":
        found.append(ClaimWarning(
            claim.id, "uncalibrated-scale", path + ("scale",),
            f"the threshold {claim.threshold} is on the raw composition score, whose size depends on the matrices' "
            "shapes and spectra (a perfect rank-r composition scores 1/sqrt(r)), so it means different things on "
            "different models",
            "use 'scale: z' (standard deviations above random orientations; at_least: 3 reads 'composes' on any "
            "model) or 'scale: relative_to_max' (1.0 is a perfect composition)",
        ))
    return found


def spec_warnings(spec: Any, smap: SourceMap, facts: ModelFacts | None = None, *,
                  read_card: bool = True) -> list[ClaimWarning]:
    """Every warning of a validated ``spec`` that needs no model, in claim order. ``facts`` is the model's
    shape; with ``read_card`` and none given, read from the card of the file's ``model:`` as ``validate``
    does (without it, the rules that need the model are left to the claims' compile)."""
    if facts is None and read_card:
        file = Path(smap.file)
        facts = card_facts(str(spec.model), file.parent if file.is_file() else Path.cwd())
    found: list[ClaimWarning] = []
    for i, claim in enumerate(spec.claims):
        found += claim_warnings(claim, ("claims", i), facts)
    return found
