"""Where a pass's logits go: reduced, inside the chunk loop, to what the claims read.

Every forward call of the engine yields logits ``[c, seq, vocab]`` for one run (a variant, an
input's unedited run, an edge-level circuit, another model) and ``c`` consecutive sequences. A
:class:`LogitSink` takes them before the next call starts:

- :class:`Readouts` (what ``run_file`` uses) keeps, per run, each declared :class:`Read`'s metric
  values at its mask's positions (one float per selected position), the clean logits' rows only at
  the masks whose metrics read the clean distribution, and the first ``window`` sequences' logits
  of each unedited input (for the self-checks). Full logits never outlive their call, so memory
  grows with the number of runs x selected positions as scalars, not x vocabulary.
- :class:`Collector` keeps every run's full logits (tests and benchmarks compare them with a naive loop).

Values are the same numbers as scoring the full logits at once: metrics are row-wise functions
(a softmax, a gather, an argmax per position), and each row is computed from the same logits.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Protocol

import torch

from circuitcheck.metrics.registry import Metric
from circuitcheck.plan.interventions import CLEAN

__all__ = ["Collector", "LogitSink", "Readouts", "Want", "input_target"]


def input_target(name: str) -> tuple[str, str]:
    """The target of input ``name``'s unedited run (the clean run is ``input_target(CLEAN)``)."""
    return ("input", name)


class LogitSink(Protocol):
    """What the engine hands a pass's logits to (module docstring). ``k`` indexes the run list."""

    base_from_cache: bool
    """Whether an input's unedited logits come from its cached final residual stream (a :class:`Collector`),
    rather than from what the sink already holds of them (so passes need not cache that stream)."""

    def chunk(self, k: Hashable, first: int, logits: torch.Tensor) -> None:
        """Run ``k``'s logits ``[c, seq, vocab]`` for sequences ``first .. first + c``."""

    def position(self, k: Hashable, first: int, position: int, logits: torch.Tensor) -> None:
        """Run ``k``'s logits ``[c, vocab]`` at one ``position`` of sequences ``first .. first + c``; its
        other positions are its input's (:meth:`like_input`, called before)."""

    def positions(self, k: Hashable, first: int, positions: torch.Tensor, logits: torch.Tensor) -> None:
        """Run ``k``'s logits ``[c, len(positions), vocab]`` at ``positions`` (sorted) of sequences
        ``first .. first + c``; its other positions are its input's (:meth:`like_input`, called before)."""

    def like_input(self, k: Hashable, name: str) -> None:
        """Run ``k``'s logits are input ``name``'s unedited ones (until :meth:`position` overwrites some)."""

    def needed_positions(self, k: Hashable) -> torch.Tensor | None:
        """``[seq]`` bool: the positions of run ``k``'s logits the sink reads, or None for every position."""

    def input_chunks(self, name: str) -> Callable[[int, torch.Tensor], None] | None:
        """A receiver for input ``name``'s unedited logits as they are computed, or ``None`` to keep them whole."""

    def input_head(self, name: str, n: int) -> torch.Tensor:
        """Input ``name``'s unedited logits for its first ``n`` sequences (fewer if the sink keeps fewer)."""


@dataclass(frozen=True, eq=False)
class Want:
    """One reduction: ``metric`` at ``mask``'s positions."""

    metric: Metric
    mask: torch.Tensor

    @property
    def key(self) -> tuple[str, int]:
        return (self.metric.name, id(self.mask))


@dataclass
class _MaskIndex:
    """Where each sequence's selected positions sit in the flattened ``mask`` (``logits[mask]``'s rows)."""

    mask: torch.Tensor
    starts: torch.Tensor = field(init=False)
    _slots: torch.Tensor | None = None

    def __post_init__(self) -> None:
        self.starts = torch.cat([torch.zeros(1, dtype=torch.long), self.mask.sum(1).cumsum(0)])

    def span(self, first: int, last: int) -> tuple[int, int]:
        return int(self.starts[first]), int(self.starts[last])

    def slots(self) -> torch.Tensor:
        """``[n_seqs, seq]``: each selected position's row in ``logits[mask]`` (made when first needed)."""
        if self._slots is None:
            self._slots = self.mask.flatten().long().cumsum(0).view_as(self.mask) - 1
        return self._slots


class Readouts:
    """Per run, the values of its wants; per input, the first ``window`` sequences' logits; and the
    clean logits' rows at the masks that need them. Self-check trackers: every chunk is checked for
    non-finite logits, the runs in ``against_clean`` are compared with the clean logits over the
    window, and the runs in ``constant`` with their own first sequence.
    """

    def __init__(
        self,
        next_token: torch.Tensor,
        wants: dict[Hashable, list[Want]],
        clean_rows: list[torch.Tensor],
        window: int,
        keep_full_clean: bool = False,
        counterfactual: torch.Tensor | None = None,
    ) -> None:
        self.base_from_cache = False
        self.next_token = next_token
        self.counterfactual = counterfactual
        """``[n_seqs, seq]`` wrong answers for metrics that read them (``logit_diff``), gathered like the targets."""
        self.wants = wants
        self.window = window
        self.clean = input_target(CLEAN)
        self._clean_window: torch.Tensor | None = None
        self.keep_full_clean = keep_full_clean
        self.values: dict[tuple[Hashable, str, int], torch.Tensor] = {}
        self._index: dict[int, _MaskIndex] = {}
        rows_for = [w.mask for ws in wants.values() for w in ws if w.metric.reads_clean] + list(clean_rows)
        self._row_masks = {id(m): m for m in rows_for}
        self.rows: dict[int, torch.Tensor] = {}
        self.heads: dict[str, list[torch.Tensor]] = defaultdict(list)
        self.full_clean: list[torch.Tensor] = []
        self.against_clean: dict[Hashable, float] = {}
        self.constant: dict[Hashable, float] = {}
        self._first_row: dict[Hashable, torch.Tensor] = {}
        self.non_finite: tuple[Hashable, int, int] | None = None
        """The first (run, sequence, position) whose logits were NaN or infinite."""

    def compare_with_clean(self, k: Hashable) -> None:
        self.against_clean[k] = 0.0

    def check_constant(self, k: Hashable) -> None:
        self.constant[k] = 0.0

    def _mask_index(self, mask: torch.Tensor) -> _MaskIndex:
        if id(mask) not in self._index:
            self._index[id(mask)] = _MaskIndex(mask)
        return self._index[id(mask)]

    def _store(self, k: Hashable, want: Want, rows: torch.Tensor | slice, values: torch.Tensor) -> None:
        key = (k, *want.key)
        if key not in self.values:
            self.values[key] = torch.empty(int(want.mask.sum()), dtype=values.dtype)
        self.values[key][rows] = values

    def _clean_rows(self, want: Want, rows: torch.Tensor | slice) -> torch.Tensor:
        return self.rows[id(want.mask)][rows] if want.metric.reads_clean else torch.empty(0)

    # --- the sink ------------------------------------------------------------------------------------------

    def chunk(self, k: Hashable, first: int, logits: torch.Tensor) -> None:
        last = first + len(logits)
        self._track(k, first, logits)
        if k == self.clean:
            self._take_clean(first, logits)
        for want in self.wants.get(k, ()):
            sel = want.mask[first:last]
            a, b = self._mask_index(want.mask).span(first, last)
            targets = self.next_token[first:last][sel]
            wrong = None if self.counterfactual is None else self.counterfactual[first:last][sel]
            values = want.metric(logits[sel], targets, self._clean_rows(want, slice(a, b)), wrong)
            self._store(k, want, slice(a, b), values)

    def position(self, k: Hashable, first: int, position: int, logits: torch.Tensor) -> None:
        self.positions(k, first, torch.tensor([position]), logits[:, None])

    def positions(self, k: Hashable, first: int, positions: torch.Tensor, logits: torch.Tensor) -> None:
        last = first + len(logits)
        self._track(k, first, logits, positions)
        for want in self.wants.get(k, ()):
            sel = want.mask[first:last][:, positions]
            slots = self._mask_index(want.mask).slots()[first:last][:, positions][sel]
            targets = self.next_token[first:last][:, positions][sel]
            wrong = None if self.counterfactual is None else self.counterfactual[first:last][:, positions][sel]
            self._store(k, want, slots, want.metric(logits[sel], targets, self._clean_rows(want, slots), wrong))

    def needed_positions(self, k: Hashable) -> torch.Tensor | None:
        if k in self.against_clean or k in self.constant or (isinstance(k, tuple) and k[0] == "input"):
            return None  # the self-checks compare every position
        wants = self.wants.get(k, ())
        if not wants:
            return None
        return torch.stack([w.mask.any(0) for w in wants]).any(0)

    def like_input(self, k: Hashable, name: str) -> None:
        source = input_target(name)
        for want in self.wants.get(k, ()):
            have = self.values.get((source, *want.key))
            if have is None:
                raise KeyError(f"input {name!r} was never reduced for {want.metric.name}; register its wants")
            self.values[(k, *want.key)] = have.clone()

    def input_chunks(self, name: str) -> Callable[[int, torch.Tensor], None]:
        target = input_target(name)
        return lambda first, logits: self.chunk(target, first, logits)

    def input_head(self, name: str, n: int) -> torch.Tensor:
        return torch.cat(self.heads[name])[:n]  # the window may hold fewer

    # --- what the sink keeps beside the values -------------------------------------------------------------

    def _take_clean(self, first: int, logits: torch.Tensor) -> None:
        last = first + len(logits)
        for key, mask in self._row_masks.items():
            a, b = self._mask_index(mask).span(first, last)
            if key not in self.rows:
                self.rows[key] = torch.empty(int(mask.sum()), logits.shape[-1], dtype=logits.dtype)
            self.rows[key][a:b] = logits[mask[first:last]]
        if self.keep_full_clean:
            self.full_clean.append(logits)

    def _track(self, k: Hashable, first: int, logits: torch.Tensor, positions: torch.Tensor | None = None) -> None:
        """Self-check trackers; ``logits`` is ``[c, seq, vocab]``, or ``[c, len(positions), vocab]`` at
        ``positions``."""
        if self.non_finite is None:
            bad = ~torch.isfinite(logits)
            if bad.any():
                seq, pos = (int(x) for x in bad.nonzero()[0][:2])
                self.non_finite = (k, first + seq, pos if positions is None else int(positions[pos]))
        if isinstance(k, tuple) and k[0] == "input":
            held = sum(len(h) for h in self.heads[k[1]])
            if held < self.window:
                self.heads[k[1]].append(logits[: self.window - held])
        if k in self.against_clean:
            self._against_clean(k, first, logits, positions)
        if k in self.constant:
            if k not in self._first_row:
                self._first_row[k] = logits[0].clone()
            row = self._first_row[k] if positions is None else self._first_row[k][positions]
            self.constant[k] = max(self.constant[k], float((logits - row).abs().max()))

    def _against_clean(self, k: Hashable, first: int, logits: torch.Tensor, positions: torch.Tensor | None) -> None:
        if self._clean_window is None:  # the clean run is over before any other run starts
            self._clean_window = torch.cat(self.heads[CLEAN])
        window = self._clean_window
        n = max(0, min(len(window) - first, len(logits)))
        if n == 0:
            return
        want = window[first : first + n]
        if positions is not None:
            want = want[:, positions]
        self.against_clean[k] = max(self.against_clean[k], float((logits[:n] - want).abs().max()))

    def clean_logits(self) -> torch.Tensor | None:
        return torch.cat(self.full_clean) if self.keep_full_clean else None


class Collector:
    """A sink that keeps every run's full logits ``[n_seqs, seq, vocab]`` (tests and benchmarks)."""

    def __init__(
        self, n_seqs: int, input_logits: Callable[[str], torch.Tensor], reads: torch.Tensor | None = None
    ) -> None:
        self.base_from_cache = True
        self.reads = reads
        """``[seq]`` bool: the positions tests read (the others may keep the input's logits); None: every one."""
        self.n_seqs = n_seqs
        self.input_logits = input_logits
        self.outputs: dict[Hashable, torch.Tensor] = {}

    def chunk(self, k: Hashable, first: int, logits: torch.Tensor) -> None:
        if k not in self.outputs:
            self.outputs[k] = logits.new_empty((self.n_seqs, *logits.shape[1:]))
        self.outputs[k][first : first + len(logits)] = logits

    def position(self, k: Hashable, first: int, position: int, logits: torch.Tensor) -> None:
        self.outputs[k][first : first + len(logits), position] = logits

    def positions(self, k: Hashable, first: int, positions: torch.Tensor, logits: torch.Tensor) -> None:
        self.outputs[k][first : first + len(logits), positions] = logits

    def like_input(self, k: Hashable, name: str) -> None:
        self.outputs[k] = self.input_logits(name).clone()

    def needed_positions(self, k: Hashable) -> torch.Tensor | None:
        return self.reads

    def input_chunks(self, name: str) -> None:
        return None

    def input_head(self, name: str, n: int) -> torch.Tensor:
        return self.input_logits(name)[:n]

