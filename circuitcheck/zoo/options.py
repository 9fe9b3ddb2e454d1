"""How a model is loaded: device, dtype, and whether a bridge that disagrees with its model is trusted.

The library calls (``circuitcheck.check``/``compare``) set these for everything they load with
:func:`loading`; :func:`circuitcheck.zoo.load.load` reads them, so the compile stage and the model
comparison need no extra arguments. Outside a ``loading`` block a model loads on the CPU in float32.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from circuitcheck.errors import ModelLoadError

DEVICES = ("auto", "cpu", "cuda", "mps")
DTYPES = ("float32", "bfloat16", "float16")

LOGIT_TOLERANCE = {"float32": 1e-4, "bfloat16": 3e-2, "float16": 1e-2}
"""Two computations of the same logits agree within this times ``max(1, largest |logit|)``, per dtype.

Used by the bridge check (the bridge against the model's own ``transformers`` forward) and scaled into the
run's self-checks (:func:`self_check_scale`). The unit is one rounding of a logit-sized number, times a margin
for the different operation order of two implementations over a few layers:

| dtype    | machine epsilon | tolerance | margin  |
|----------|-----------------|-----------|---------|
| float32  | 1.2e-7          | 1e-4      | ~800 eps (measured agreement: 1e-7..1e-6) |
| float16  | 9.8e-4          | 1e-2      | ~10 eps |
| bfloat16 | 7.8e-3          | 3e-2      | ~4 eps  |

A config TransformerLens does not honour (GPT-2 ``scale_attn_weights: false``) moves logits by O(1), far above
every row, so the looser rows still catch it."""


def self_check_scale(dtype: str) -> float:
    """How much looser than in float32 the run's self-check tolerances are in ``dtype``: the ratio of the
    rows of :data:`LOGIT_TOLERANCE` (1 in float32, 100 in float16, 300 in bfloat16)."""
    return LOGIT_TOLERANCE.get(dtype, LOGIT_TOLERANCE["float32"]) / LOGIT_TOLERANCE["float32"]


@dataclass(frozen=True)
class LoadOptions:
    device: str = "cpu"
    """``cpu``, ``cuda``, ``cuda:N``, ``mps`` or ``auto`` (cuda if available, else mps, else cpu)."""
    dtype: str = "float32"
    trust_bridge: bool = False
    """Run on an HF model whose bridge disagrees with its own forward (the mismatch is recorded)."""

    def checked(self) -> LoadOptions:
        """These options with ``auto`` resolved; a device this machine lacks or an unknown dtype raises."""
        return LoadOptions(resolve_device(self.device), check_dtype(self.dtype), self.trust_bridge)


_OPTIONS: ContextVar[LoadOptions | None] = ContextVar("circuitcheck_load_options", default=None)


def current_options() -> LoadOptions:
    return _OPTIONS.get() or LoadOptions()


@contextmanager
def loading(options: LoadOptions) -> Iterator[LoadOptions]:
    """Every model loaded inside the block is loaded with ``options`` (checked first: a bad device fails here)."""
    resolved = options.checked()
    token = _OPTIONS.set(resolved)
    try:
        yield resolved
    finally:
        _OPTIONS.reset(token)


def check_dtype(dtype: str) -> str:
    if dtype not in DTYPES:
        raise ModelLoadError(f"unknown dtype {dtype!r}\n  fix: use one of {', '.join(DTYPES)}")
    return dtype


def resolve_device(device: str) -> str:
    """``device`` checked against this machine; ``auto`` becomes the best one present."""
    import torch

    mps = getattr(torch.backends, "mps", None)
    has_mps = bool(mps is not None and mps.is_available())
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "mps" if has_mps else "cpu"
    kind, _, index = device.partition(":")
    if kind not in DEVICES or (index and (kind != "cuda" or not index.isdigit())):
        raise ModelLoadError(f"unknown device {device!r}\n  fix: use one of {', '.join(DEVICES)} (or cuda:N)")
    if kind == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError(
            f"device {device!r} is not available: this torch ({torch.__version__}) sees no CUDA GPU\n"
            "  fix: use --device cpu (or auto), or install a CUDA build of torch on a machine with a GPU"
        )
    if kind == "cuda" and index and int(index) >= torch.cuda.device_count():
        raise ModelLoadError(
            f"device {device!r} is not available: {torch.cuda.device_count()} CUDA GPU(s) visible\n"
            f"  fix: use cuda:0..cuda:{torch.cuda.device_count() - 1}"
        )
    if kind == "mps" and not has_mps:
        raise ModelLoadError(
            f"device {device!r} is not available on this machine (Apple-silicon GPUs only)\n"
            "  fix: use --device cpu (or auto)"
        )
    return device
