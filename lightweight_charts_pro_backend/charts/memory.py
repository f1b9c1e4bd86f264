"""Giving memory back to the operating system after large writes.

A million-point write parses into hundreds of megabytes of short-lived objects. CPython frees
them, but glibc keeps freed heap pages mapped unless asked, so a server's resident size would
stay near its peak. Two glibc calls fix that; on other C libraries both are no-ops:

- ``mallopt(M_MMAP_THRESHOLD)`` pins the threshold above which blocks get their own mapping.
  glibc otherwise raises it up to 32 MiB after the first large free, and later multi-megabyte
  request buffers then fragment the heap instead of being unmapped when freed.
- ``malloc_trim`` returns free heap pages after a large write.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable
from functools import cache

_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 256 * 1024


@cache
def _libc_function(name: str) -> Callable[..., int] | None:
    path = ctypes.util.find_library("c")
    if path is None:
        return None
    try:
        function: Callable[..., int] = getattr(ctypes.CDLL(path), name)
    except (OSError, AttributeError):
        return None
    return function


def tune_allocator() -> None:
    """Map large blocks separately so that freeing them returns the memory at once."""
    mallopt = _libc_function("mallopt")
    if mallopt is not None:
        mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)


def release_freed_memory() -> None:
    trim = _libc_function("malloc_trim")
    if trim is not None:
        trim(0)
