"""Host memory for CPU fits: keep the pages of freed feature maps for the next step.

glibc's malloc serves each block above its mmap threshold (32 MB at most) with a fresh ``mmap``
and unmaps it when freed. A CPU fit frees and reallocates its feature maps every step (64 MB
each at 512x512), so every step faulted all of their pages in anew, and the kernel's page
zeroing took half of a step's time (BENCHMARKS.md, "Host memory"). :func:`keep_freed_memory`
makes malloc serve large blocks from its heap and keep what is freed there, which changes no
result; :func:`release_freed_memory` hands the free pages back to the system at the end of a job.
Where the C library is not glibc (macOS, Windows, musl) both do nothing.
"""
from __future__ import annotations

import ctypes
import functools

__all__ = ["keep_freed_memory", "release_freed_memory"]

_M_TRIM_THRESHOLD = -1  # mallopt(3): -1 as its value disables trimming
_M_MMAP_MAX = -4  # mallopt(3): 0 as its value serves every block from the heap


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(None)
    except (OSError, TypeError):  # Windows has no handle for the process's own symbols
        return None
    return libc if hasattr(libc, "gnu_get_libc_version") else None


@functools.cache
def keep_freed_memory() -> bool:
    """Make this process's malloc keep freed large blocks for reuse; whether it now does.

    Process-wide and idempotent; :class:`~zeroig_plugin.ZeroIG` calls it for CPU devices. The
    memory held stays at the job's peak, which is higher (measured: +25 % for a 512x512 fit, +33 %
    for a 1080p inference), until :func:`release_freed_memory`.
    """
    libc = _glibc()
    return libc is not None and bool(libc.mallopt(_M_MMAP_MAX, 0)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, -1))


def release_freed_memory() -> None:
    """Return the free pages of malloc's heap to the system (``malloc_trim``): after a job, in a
    process that goes on (the napari plugin, a script between videos)."""
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)
