"""Give freed memory back to the operating system between passes.

glibc's allocator keeps freed blocks below its (adaptive, up to 32 MB) mmap threshold in the heap, so a
run that frees one chunk's activations and allocates the next keeps the resident size of the largest
chunks it ever held, fragmented: at 20,000 sequences on ``trigram`` about 0.5 GB above what is live.
``malloc_trim(0)`` returns those pages; elsewhere (no glibc) this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from functools import cache
from typing import Any


@cache
def _libc() -> Any:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return libc if libc is not None and hasattr(libc, "malloc_trim") else None


def release_freed_memory() -> None:
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)
