"""Replacement activations for edits, computed once per run from the clean cache."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch

from circuitcheck.plan.components import HookSite
from circuitcheck.plan.interventions import CLEAN, HookEdit, PathSpec
from circuitcheck.run.linearize import fit_jacobian, mlp_function
from circuitcheck.run.paths import path_values, sender_delta
from circuitcheck.run.resume import clean_logits_from_cache


def derangement(n: int, seed: int) -> torch.Tensor:
    """A seeded permutation of ``range(n)`` with no fixed point (n >= 2).

    A random ordering closed into one cycle: each element maps to the next one in
    the ordering, so no sequence is ever "resampled" from itself.
    """
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(n, generator=gen)
    perm = torch.empty(n, dtype=torch.long)
    perm[order] = order.roll(-1)
    return perm


@dataclass
class InputCache:
    """One input's unedited run, as far as resumed passes need it: the activations they start
    from, and the logits that positions no edit touches keep."""

    acts: dict[str, torch.Tensor]
    known_logits: torch.Tensor | None = None
    """The logits of the pass that cached ``acts``, when the cache was made with them."""
    inside_checked: bool = False
    """Whether starting inside the last block has reproduced these logits (``check_inside_start``)."""
    suffix_checked: bool = False
    """Whether a suffix pass has reproduced these logits (``check_suffix``)."""

    def logits(self, model: Any) -> torch.Tensor:
        """The input's logits: those of the caching pass, or recomputed once from the cached final
        residual stream."""
        if self.known_logits is None:
            with torch.no_grad():
                self.known_logits = clean_logits_from_cache(model, self.acts)
        return self.known_logits


class Replacements:
    """Replacement activations for edits, computed once from the clean cache."""

    def __init__(
        self,
        cache: dict[str, torch.Tensor],
        model: Any = None,
        masks: dict[str, torch.Tensor] | None = None,
        means: dict[str, torch.Tensor] | None = None,
    ) -> None:
        self.cache = cache
        self.model = model
        self.masks = masks or {}
        self._means: dict[str, torch.Tensor] = dict(means or {})
        """Per hook, the clean run's per-position mean ``[1, ...]`` (given, or computed from the cache)."""
        self._perms: dict[int, torch.Tensor] = {}
        self._linear: dict[HookEdit, tuple[torch.Tensor, torch.Tensor]] = {}
        self._paths: dict[HookEdit, torch.Tensor] = {}
        self._deltas: dict[PathSpec, torch.Tensor] = {}
        self.inputs: dict[str, InputCache] = {CLEAN: InputCache(cache)}
        """Per input, the unedited run that passes on that input resume from (the engine adds
        other inputs' runs when resuming saves more than they cost)."""

    def prepare(self, edit: HookEdit) -> None:
        """Fit or precompute what an edit needs, outside any hook context (a module run
        inside a hook would fire the hooks attached to it)."""
        if edit.source == "linear":
            self.linear_map(edit)
        if edit.source == "path" and edit not in self._paths:
            assert edit.path is not None, "path edits carry a PathSpec"
            # The receiver's input is the same for every head of its layer and every position choice.
            shared = replace(edit, site=HookSite(edit.site.hook), positions="")
            if shared not in self._paths:
                self._paths[shared] = path_values(self.model, edit, self.cache, self.sender_delta(edit.path))
            self._paths[edit] = self._paths[shared]

    def sender_delta(self, path: PathSpec) -> torch.Tensor:
        """The sender's change to the residual stream, computed once per sender and ablation."""
        key = replace(path, resid="")
        if key not in self._deltas:
            everyone = torch.arange(len(self.cache[path.sender.hook]))
            sender = HookEdit(HookSite(path.sender.hook), path.sender_at, path.source, path.seed)
            alternative = self.values(sender, everyone)
            self._deltas[key] = sender_delta(self.model, path, self.cache, alternative, self.masks[path.sender_at])
        return self._deltas[key]

    def linear_map(self, edit: HookEdit) -> tuple[torch.Tensor, torch.Tensor]:
        """The fitted (J, b) of a ``linear`` edit; fitted once, outside any hook context."""
        if edit not in self._linear:
            assert edit.reads is not None and edit.fit is not None, "linear edits name their input and fit positions"
            layer = int(edit.site.hook.split(".")[1])
            inputs = self.cache[edit.reads][self.masks[edit.fit]]
            self._linear[edit] = fit_jacobian(mlp_function(self.model, layer), inputs, edit.jacobian)
        return self._linear[edit]

    def values(self, edit: HookEdit, seqs: torch.Tensor) -> torch.Tensor:
        """What ``edit`` writes at its hook for the sequences ``seqs`` (all positions; the caller masks)."""
        if edit.source == "path":
            return self._paths[edit][seqs]
        if edit.source in ("zero", "mean") and edit.site.hook in self._means:  # no full cache needed
            mean = self._means[edit.site.hook]
            shape = (len(seqs),) + mean.shape[1:]
            return mean.new_zeros(shape) if edit.source == "zero" else mean.expand(shape)
        clean = self.cache[edit.site.hook]
        if edit.source == "zero":
            return clean.new_zeros((len(seqs),) + clean.shape[1:])
        if edit.source == "mean":
            if edit.site.hook not in self._means:
                self._means[edit.site.hook] = clean.mean(0, keepdim=True)
            return self._means[edit.site.hook].expand((len(seqs),) + clean.shape[1:])
        if edit.source == "resample":
            assert edit.seed is not None, "resample edits carry a seed"
            if edit.seed not in self._perms:
                self._perms[edit.seed] = derangement(len(clean), edit.seed)
            return clean[self._perms[edit.seed][seqs]]
        return clean[seqs]
