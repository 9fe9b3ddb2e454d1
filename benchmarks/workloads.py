"""Benchmark models and workloads: what each (model, workload) pair runs.

A workload is a list of engine variants over one seeded token batch. Every
variant is what a hypothesis file would compile to (``HookEdit`` / ``Variant`` /
``PathSpec``), built directly so the benchmark does not depend on a claim kind.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from circuitcheck.plan.circuits import ModelShape
from circuitcheck.plan.components import HookSite
from circuitcheck.plan.interventions import CLEAN, HookEdit, PathSpec, Source, Variant
from circuitcheck.run.edges import EdgeLayout
from circuitcheck.run.engine import EngineInputs
from circuitcheck.spec.circuits import Edge

ALL = "all"

NATIVE = {
    "native-1L-d32": {"n_layers": 1, "d_model": 32, "n_heads": 2, "d_head": 16},
    "native-2L-d64": {"n_layers": 2, "d_model": 64, "n_heads": 4, "d_head": 16},
    "native-4L-d128": {"n_layers": 4, "d_model": 128, "n_heads": 4, "d_head": 32},
}
"""Seeded random TL-native models (d_mlp = 4 d_model, 64-token vocabulary, LayerNorm)."""

ZOO = ("trigram", "caesar-easy")

WORKLOADS = ("sweep", "patching", "complements", "path", "baselines", "edges")

EDGE_MODELS = ("native-2L-d64", "native-4L-d128")
"""The models the ``edges`` workload runs on (a minimality test over every edge; the others skip it)."""


@dataclass(frozen=True)
class Size:
    n_seqs: int
    seq: int


SIZES = {
    # (quick, full) batch shapes; the zoo models read real-length sequences in the full run.
    "native-1L-d32": (Size(8, 8), Size(32, 16)),
    "native-2L-d64": (Size(8, 8), Size(32, 16)),
    "native-4L-d128": (Size(4, 4), Size(8, 16)),
    "trigram": (Size(8, 12), Size(32, 50)),
    "caesar-easy": (Size(8, 8), Size(32, 32)),
}


def load_model(name: str) -> Any:
    """A frozen, inference-mode model: a seeded native config or a zoo checkpoint."""
    if name in NATIVE:
        from circuitcheck.zoo.build import build_bridge

        d = NATIVE[name]["d_model"]
        cfg = NATIVE[name] | {
            "d_mlp": 4 * d,
            "d_vocab": 64,
            "n_ctx": 64,
            "act_fn": "gelu",
            "normalization_type": "LN",
            "seed": 0,
        }
        model = build_bridge(cfg)
    else:
        from circuitcheck.zoo.load import load

        model = load(name).model
    from circuitcheck.zoo.build import frozen

    return frozen(model)


CORRUPTED = "corrupted"


def make_inputs(model: Any, size: Size, seed: int = 0) -> EngineInputs:
    """Seeded random tokens (clean, and an independent ``corrupted`` draw), plus ``all`` and one
    single-position mask ``p{j}`` per position."""
    gen = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, model.cfg.d_vocab, (size.n_seqs, size.seq), generator=gen)
    corrupted = torch.randint(0, model.cfg.d_vocab, (size.n_seqs, size.seq), generator=gen)
    masks = {ALL: torch.ones(size.n_seqs, size.seq, dtype=torch.bool)}
    for j in range(size.seq):
        mask = torch.zeros(size.n_seqs, size.seq, dtype=torch.bool)
        mask[:, j] = True
        masks[f"p{j}"] = mask
    return EngineInputs({CLEAN: tokens, CORRUPTED: corrupted}, masks)


def heads(model: Any, layers: range | None = None) -> list[HookSite]:
    cfg = model.cfg
    return [
        HookSite(f"blocks.{layer}.attn.hook_z", h)
        for layer in (layers or range(cfg.n_layers))
        for h in range(cfg.n_heads)
    ]


def components(model: Any) -> list[HookSite]:
    """Every head and MLP, in forward order (the sites circuits are made of)."""
    cfg = model.cfg
    sites: list[HookSite] = []
    for layer in range(cfg.n_layers):
        sites += heads(model, range(layer, layer + 1))
        if not cfg.attn_only:
            sites.append(HookSite(f"blocks.{layer}.hook_mlp_out"))
    return sites


def sweep(model: Any, data: EngineInputs) -> list[Variant]:
    """Activation patching over every head x every position: resample one head at one position."""
    seq = data.inputs[CLEAN].shape[1]
    return [Variant(edits=(HookEdit(site, f"p{j}", "resample", seed=0),)) for site in heads(model) for j in range(seq)]


def patching(model: Any, data: EngineInputs) -> list[Variant]:
    """Activation patching as the ``activation_patching`` claim compiles it: one head's clean
    activation patched into the corrupted run at one position, for every head x every position."""
    seq = data.inputs[CLEAN].shape[1]
    return [
        Variant(input=CORRUPTED, edits=(HookEdit(site, f"p{j}", "clean"),)) for site in heads(model) for j in range(seq)
    ]


def complements(model: Any, n: int, seed: int = 1) -> list[Variant]:
    """Keep a random circuit, mean- or resample-ablate everything else (alternating)."""
    sites = components(model)
    gen = torch.Generator().manual_seed(seed)
    variants = []
    for i in range(n):
        k = int(torch.randint(1, max(2, len(sites)), (1,), generator=gen))
        keep = set(torch.randperm(len(sites), generator=gen)[:k].tolist())
        source: Source = "mean" if i % 2 == 0 else "resample"
        seed_arg = 0 if source == "resample" else None
        edits = tuple(HookEdit(s, ALL, source, seed_arg) for j, s in enumerate(sites) if j not in keep)
        variants.append(Variant(edits=edits))
    return variants


def receivers(model: Any) -> list[tuple[HookSite, str]]:
    """Every (receiver site, residual hook it reads) a layer-0 sender can reach, as in
    :mod:`circuitcheck.claims.path_patching`: later heads' q/k/v, MLPs, and the logits."""
    cfg = model.cfg
    out = [
        (HookSite(f"blocks.{layer}.attn.hook_{which}", h), f"blocks.{layer}.hook_resid_pre")
        for layer in range(1, cfg.n_layers)
        for h in range(cfg.n_heads)
        for which in "qkv"
    ]
    if not cfg.attn_only:
        out += [
            (HookSite(f"blocks.{layer}.hook_mlp_out"), f"blocks.{layer}.hook_resid_mid")
            for layer in range(cfg.n_layers)
        ]
    last = f"blocks.{cfg.n_layers - 1}.hook_resid_post"
    return out + [(HookSite(last), last)]


def path_patching(model: Any, n_senders: int | None = None) -> list[Variant]:
    """One variant per (layer-0 sender head, receiver): mean-ablate the sender along one path."""
    variants = []
    for sender in heads(model, range(1))[:n_senders]:
        for site, resid in receivers(model):
            spec = PathSpec(sender, "mean", resid, ALL)
            variants.append(Variant(edits=(HookEdit(site, ALL, "path", path=spec),)))
    return variants


def baselines(model: Any, n: int = 100, seed: int = 2) -> list[Variant]:
    """``n`` random circuits: each mean-ablates a random half of the components."""
    sites = components(model)
    gen = torch.Generator().manual_seed(seed)
    half = max(1, len(sites) // 2)
    variants = []
    for _ in range(n):
        picks = sorted(torch.randperm(len(sites), generator=gen)[:half].tolist())
        variants.append(Variant(edits=tuple(HookEdit(sites[j], ALL, "mean") for j in picks)))
    return variants


def edge_circuits(model: Any) -> list[list[Edge]]:
    """Minimality over every edge, as the ``minimality`` claim's candidates: one circuit per edge of
    the full graph, the full graph minus that edge."""
    every = EdgeLayout(ModelShape.of(model)).all_edges()
    return [every[:i] + every[i + 1 :] for i in range(len(every))]


def runs_on(workload: str, model_name: str) -> bool:
    return workload != "edges" or model_name in EDGE_MODELS


def build(workload: str, model: Any, data: EngineInputs, quick: bool) -> list[Variant]:
    if workload == "sweep":
        return sweep(model, data)
    if workload == "patching":
        return patching(model, data)
    if workload == "complements":
        return complements(model, 10 if quick else 40)
    if workload == "path":
        return path_patching(model, 1 if quick else None)
    if workload == "baselines":
        return baselines(model)
    if workload == "edges":
        raise ValueError("the edges workload runs circuits, not variants: use edge_circuits()")
    raise ValueError(f"unknown workload {workload!r}; expected one of {WORKLOADS}")


def captures(model: Any, variants: list[Variant]) -> set[str]:
    """The clean activations the engine reads, as :func:`circuitcheck.run.execute.run_file` captures
    them: what the edits need, plus the residual streams a resumed pass starts from (engines
    that resume at a layer export ``resume_hooks``; older ones do not)."""
    from circuitcheck.run import engine

    edits = [e for v in variants for e in v.edits]
    out = {e.site.hook for e in edits} | {e.reads for e in edits if e.reads}
    out |= {h for e in edits if e.path for h in (e.path.resid, e.path.sender.hook)}
    resume_hooks = getattr(engine, "resume_hooks", None)
    return out | (resume_hooks(model) if resume_hooks else set())
