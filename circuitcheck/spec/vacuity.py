"""The vacuity lint, without a model: claims that cannot fail (or cannot pass), found when a file loads.

A claim whose verdict is settled before the model runs is not a finding. ``validate`` refuses it, naming
the rule, unless the claim says ``allow_vacuous: true`` with a ``vacuous_reason`` (a deliberate sanity
check; better still, a self-check). The rules that need no model:

``threshold-out-of-range``
    The threshold lies outside what the estimate can be: ``at_least: 1.2`` on a fraction cannot pass,
    ``at_least: 0`` on a fraction cannot fail (:func:`estimate_range` says what each kind's estimate can be).
``keeps-everything``
    A sufficiency claim whose components are every component of the model (read from the model's card,
    no weights loaded), or a preservation / faithfulness claim whose circuit is the full model
    (``all_except: []``, or the ``nodes:`` shorthand listing every node): the "circuit" run is the model.

What needs the model and the data (a circuit listing every edge one by one, positions that select nothing
an ablation can reach, activation patching that cuts every path from the corrupted tokens to the scored
positions) is checked when the file compiles (:mod:`circuitcheck.plan.vacuity`).
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from circuitcheck.errors import SpecError
from circuitcheck.spec.circuits import AllExcept
from circuitcheck.spec.components import Attn, Component, Embed, Head, Hook, Logits, Mlp, PosEmbed
from circuitcheck.spec.yaml_source import SourceMap

ALLOW_FIX = "or, if it is a deliberate sanity check, set 'allow_vacuous: true' and say why in 'vacuous_reason'"
"""The escape every vacuity error offers, after the rewrite that would make the claim a finding."""

INF = math.inf
Range = tuple[float, float]

METRIC_RANGES: dict[str, Range] = {
    "accuracy": (0.0, 1.0),
    "correct_prob": (0.0, 1.0),
    "top1_agreement": (0.0, 1.0),
    "logprob": (-INF, 0.0),
    "loss": (0.0, INF),
    "kl": (0.0, INF),
}
"""What the built-in metrics can be (a plug-in metric is not judged: its range is unknown)."""

HIGHER_IS_BETTER = {"accuracy": True, "correct_prob": True, "top1_agreement": True, "logprob": True,
                    "loss": False, "kl": False}


@dataclass(frozen=True)
class VacuityError:
    """A claim that cannot fail: the ``rule`` it breaks, where (a spec ``path``), why, and the fix."""

    rule: str
    path: tuple[str | int, ...]
    message: str
    fix: str

    def texts(self) -> tuple[str, str]:
        """The error's message, naming the rule, and its fix, naming the escape."""
        return f"vacuous claim (rule {self.rule}): {self.message}", f"{self.fix}; {ALLOW_FIX}"

    def spec_error(self, smap: SourceMap) -> SpecError:
        return SpecError(smap.locate(self.path), ".".join(map(str, self.path)), *self.texts())


@dataclass(frozen=True)
class ModelFacts:
    """What the lint reads of a model without loading it: its shape, from the model card's ``config``."""

    n_layers: int
    n_heads: int
    has_mlps: bool
    has_pos_embed: bool
    parallel_attn_mlp: bool = False
    """Attention and MLP read the same residual stream (GPT-NeoX/Pythia): an MLP does not read its layer's heads."""

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> ModelFacts | None:
        try:
            n_layers, n_heads = int(config["n_layers"]), int(config["n_heads"])
        except (KeyError, TypeError, ValueError):
            return None
        has_pos = config.get("positional_embedding_type", "standard") in ("standard", "shortformer")
        return cls(n_layers, n_heads, not bool(config.get("attn_only", False)), has_pos,
                   bool(config.get("parallel_attn_mlp", False)))

    @classmethod
    def from_hf_config(cls, config: dict[str, Any]) -> ModelFacts | None:
        """The facts of a Hugging Face ``config.json`` (GPT-2 and GPT-NeoX field names, and the common
        ``num_hidden_layers``/``num_attention_heads``); None when it names neither layers nor heads."""
        layers = next((config[k] for k in HF_LAYER_KEYS if k in config), None)
        heads = next((config[k] for k in HF_HEAD_KEYS if k in config), None)
        try:
            n_layers, n_heads = int(layers), int(heads)  # type: ignore[arg-type]  # None is caught below
        except (TypeError, ValueError):
            return None
        rotary = config.get("model_type") in HF_ROTARY_TYPES or "rotary_pct" in config or "rope_theta" in config
        return cls(n_layers, n_heads, True, not rotary, bool(config.get("use_parallel_residual", False)))

    def components(self) -> list[Component]:
        """Every component in forward order, as ``circuitcheck.plan.components.model_components`` lists them."""
        found: list[Component] = [Embed()]
        found += [PosEmbed()] if self.has_pos_embed else []
        for layer in range(self.n_layers):
            found += [Head(layer, h) for h in range(self.n_heads)]
            found += [Mlp(layer)] if self.has_mlps else []
        return found


HF_LAYER_KEYS = ("n_layer", "num_hidden_layers", "num_layers")
HF_HEAD_KEYS = ("n_head", "num_attention_heads", "num_heads")
HF_ROTARY_TYPES = ("gpt_neox", "gptj", "llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "phi", "olmo")
"""Hugging Face ``model_type``s with rotary position embeddings (no ``pos_embed`` component)."""


def card_facts(model: str, base: Path) -> ModelFacts | None:
    """The shape in ``model``'s card (a zoo name or a model folder relative to ``base``); None when there is
    no readable card (the file's model is then checked, and the lint repeated, when it compiles)."""
    zoo = Path(os.environ.get("CIRCUITCHECK_ZOO") or Path(__file__).resolve().parents[2] / "models")
    candidates = [zoo / model] if "/" not in model and not model.startswith(".") else []
    candidates.append(Path(model) if Path(model).is_absolute() else base / model)
    for folder in candidates:
        card = folder if folder.name == "card.json" else folder / "card.json"
        try:
            data = json.loads(card.read_text()) if card.is_file() and card.stat().st_size < 1 << 22 else None
        except (OSError, UnicodeDecodeError, ValueError):
            data = None
        if isinstance(data, dict) and isinstance(data.get("config"), dict):
            return ModelFacts.from_config(data["config"])
        hf_config = _hf_config(folder)  # a Hugging Face folder: config.json next to the weights, no card
        if hf_config is not None:
            return ModelFacts.from_hf_config(hf_config)
    return None  # hf:<name> too: the cache is read when the file compiles, where the lint is repeated


def _hf_config(folder: Path) -> dict[str, Any] | None:
    path = folder if folder.name == "config.json" else folder / "config.json"
    try:
        data = json.loads(path.read_text()) if path.is_file() and path.stat().st_size < 1 << 22 else None
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _bounded_metric(claim: Any) -> Range | None:
    return METRIC_RANGES.get(str(getattr(claim, "metric", "")))


def _difference(r: Range | None) -> Range | None:
    """The range of a difference of two values in ``r``."""
    return None if r is None else (r[0] - r[1], r[1] - r[0])


def _drop(claim: Any) -> Range | None:
    """The range of a drop (signed so that worse is positive), absolute or relative to the unablated value."""
    metric = str(getattr(claim, "metric", ""))
    r = METRIC_RANGES.get(metric)
    effect = getattr(claim, "effect", None)
    if r is None or effect not in ("absolute_drop", "relative_drop"):
        return None
    if effect == "absolute_drop":
        return _difference(r)
    if r[0] < 0:
        return None
    # higher is better and >= 0: drop = full - ablated <= full, so drop / |full| <= 1;
    # lower is better and >= 0: drop = ablated - full >= -full, so drop / |full| >= -1
    return (-INF, 1.0) if HIGHER_IS_BETTER[metric] else (-1.0, INF)


def _preserved(claim: Any) -> Range | None:
    """A difference of two metric values, or a ratio minus 1 (>= -1 for a metric that is never negative)."""
    r = _bounded_metric(claim)
    if getattr(claim, "estimate", "") == "difference":
        return _difference(r)
    return (-1.0, INF) if r is not None and r[0] >= 0 else None


def _unit(claim: Any) -> Range | None:
    return (0.0, 1.0)


KIND_RANGES: dict[str, Callable[[Any], Range | None]] = {
    "association": _unit,
    "qk_token_pairs": _unit,
    "qk_positional_order": _unit,
    "ordering": _unit,
    "ov_mapping": _unit,
    "minimality": _unit,
    "skip_trigram_fit": _unit,
    "ov_copying": lambda c: (-1.0, 1.0),
    "reference_table": lambda c: (-1.0, 1.0),
    "composition": lambda c: None if getattr(c, "scale", "raw") == "z" else (0.0, 1.0),
    "attention_mass": lambda c: (-1.0, 1.0) if getattr(c, "more_than_roles", None) else (0.0, 1.0),
    "independence": _bounded_metric,
    "replacement": _bounded_metric,
    "model_comparison": lambda c: _difference(_bounded_metric(c)),
    "ablation": lambda c: _drop(c) if getattr(c, "mode", "") == "necessity" else None,
    "localization": _drop,
    "path_patching": _drop,
    "preservation": _preserved,
}
"""What each built-in kind's estimate can be, where it is bounded. A kind of a plug-in says so itself with
an ``estimate_range(self) -> tuple[float, float] | None`` method; a kind in neither place is not judged."""


def estimate_range(claim: Any) -> Range | None:
    """``(low, high)`` that the claim's estimate always lies in (either may be infinite); None if unknown."""
    own = getattr(claim, "estimate_range", None)
    if callable(own):
        found = own()
        return None if found is None else (float(found[0]), float(found[1]))
    rule = KIND_RANGES.get(str(getattr(claim, "kind", "")))
    return rule(claim) if rule is not None else None


def _shown(r: Range) -> str:
    low = "(-inf" if r[0] == -INF else f"[{r[0]:g}"
    high = "inf)" if r[1] == INF else f"{r[1]:g}]"
    return f"{low}, {high}"


def threshold_problem(claim: Any, at: tuple[str | int, ...]) -> VacuityError | None:
    """``threshold-out-of-range``: a bound the estimate's range decides before anything runs."""
    r = estimate_range(claim)
    if r is None:
        return None
    lo, hi = r
    t = claim.threshold
    band = getattr(t, "band", None) or ((-t.within, t.within) if t.within is not None else None)
    path = at + ("threshold",)
    if t.at_least is not None:
        path += ("at_least",)
        never, always = t.at_least > hi, t.at_least <= lo
        fix = (f"lower it to at most {hi:g}, the largest estimate possible" if never
               else f"raise it above {lo:g}, the smallest estimate possible")
    elif t.at_most is not None:
        path += ("at_most",)
        never, always = t.at_most < lo, t.at_most >= hi
        fix = (f"raise it to at least {lo:g}, the smallest estimate possible" if never
               else f"lower it below {hi:g}, the largest estimate possible")
    elif band is not None:
        never, always = band[1] < lo or band[0] > hi, band[0] <= lo and band[1] >= hi
        fix = f"move the band into {_shown(r)}" if never else f"narrow the band to a part of {_shown(r)}"
    else:
        return None
    what = f"the estimate of claim kind {claim.kind!r} lies in {_shown(r)}, so the threshold {t}"
    if never:
        return VacuityError("threshold-out-of-range", path, f"{what} can never be met: the claim cannot pass", fix)
    if always:
        return VacuityError("threshold-out-of-range", path, f"{what} holds for every estimate: the claim cannot fail",
                            fix)
    return None


_HOOK_COMPONENTS = (
    (re.compile(r"hook_embed"), lambda m: Embed()),
    (re.compile(r"hook_pos_embed"), lambda m: PosEmbed()),
    (re.compile(r"blocks\.([0-9]+)\.hook_mlp_out"), lambda m: Mlp(int(m.group(1)))),
)
"""Hook names that are exactly a component's site (a sufficiency claim keeps that site)."""


def expand(components: list[Component], facts: ModelFacts) -> set[Component]:
    """The single components that ``components`` name: ``attnL`` is every head of layer L."""
    found: set[Component] = set()
    for c in components:
        if isinstance(c, Attn):
            found |= {Head(c.layer, h) for h in range(facts.n_heads)}
        elif isinstance(c, Hook):
            for pattern, component in _HOOK_COMPONENTS:
                if m := pattern.fullmatch(c.name):
                    found.add(component(m))
        else:
            found.add(c)
    return found


def _full_circuit(circuit: Any, facts: ModelFacts | None) -> str | None:
    """How a circuit spec is the whole model without a model's edge list; None when it is not (or needs one)."""
    edges = getattr(circuit, "edges", None)
    if isinstance(edges, AllExcept) and not edges.all_except:
        return "'all_except: []' keeps every edge"
    nodes = getattr(circuit, "nodes", None)
    if nodes and facts is not None and set(nodes) >= {*facts.components(), Logits()}:
        return "its nodes are every node of the model, so it keeps every edge"
    return None


def keeps_everything(claim: Any, at: tuple[str | int, ...], circuits: dict[str, Any],
                     facts: ModelFacts | None) -> VacuityError | None:
    """``keeps-everything``: a sufficiency or preservation claim whose circuit is the whole model."""
    if claim.kind == "ablation" and claim.mode == "sufficiency" and facts is not None:
        if expand(list(claim.components), facts) >= set(facts.components()):
            listed = ", ".join(map(str, facts.components()))
            return VacuityError(
                "keeps-everything", at + ("components",),
                f"a sufficiency claim over every component of the model ({listed}) ablates nothing: the circuit "
                "run is the model, so it retains all of the effect whatever the model does",
                "name the circuit you claim is sufficient, a strict subset of the components",
            )
    circuit = circuits.get(str(getattr(claim, "circuit", "")))
    if claim.kind in ("preservation", "faithfulness") and circuit is not None:
        why = _full_circuit(circuit, facts)
        if why is not None:
            return VacuityError(
                "keeps-everything", at + ("circuit",),
                f"circuit {claim.circuit!r} is the full model ({why}): a {claim.kind} claim over it compares the "
                "model with itself",
                "name a circuit that leaves edges out",
            )
    return None


def vacuity_errors(spec: Any, smap: SourceMap, facts: ModelFacts | None = None) -> list[SpecError]:
    """Every claim of a validated ``spec`` that cannot fail (or pass), by the rules that need no model.

    ``facts`` is the model's shape; by default read from the card of the file's ``model:`` (relative paths
    against the file's folder). Claims with ``allow_vacuous: true`` are left alone.
    """
    if facts is None:
        file = Path(smap.file)
        facts = card_facts(str(spec.model), file.parent if file.is_file() else Path.cwd())
    circuits = dict(getattr(spec, "circuits", {}) or {})
    found: list[VacuityError] = []
    for i, claim in enumerate(spec.claims):
        if getattr(claim, "allow_vacuous", False):
            continue
        at: tuple[str | int, ...] = ("claims", i)
        for problem in (threshold_problem(claim, at), keeps_everything(claim, at, circuits, facts)):
            if problem is not None:
                found.append(problem)
    return [p.spec_error(smap) for p in found]
