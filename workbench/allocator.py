"""Keep freed tensor memory in the process on Linux (glibc), instead of handing it back to
the operating system after every operation.

glibc's malloc serves a request above its mmap threshold (128 KiB at first, raised
dynamically up to 32 MiB) with a fresh ``mmap`` and unmaps it on free, and it trims the
top of the heap back to the system once 128 KiB there are free. A training step on a CPU
allocates and frees thousands of tensors of a few hundred KiB to a few MiB (activations,
gradients, attention buffers): each comes back as new pages that the kernel has to fault
in and zero again. With the mmap threshold at its 32 MiB maximum and the trim threshold
at 1 GiB, those allocations reuse the heap's pages. This is what ``MALLOC_MMAP_THRESHOLD_``
and ``MALLOC_TRIM_THRESHOLD_`` in the environment would do, set from inside the process by
``mallopt``. It changes no result, only where memory comes from; the price is that the
resident memory does not shrink after a peak (as with PyTorch's own caching allocator on
GPUs). ``docs/performance.md`` gives the measured effect.

Set ``WORKBENCH_MALLOC=default`` to leave glibc's settings alone. Elsewhere (macOS,
Windows, musl) nothing is changed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

from workbench.errors import ConfigError

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD = 32 * 2**20        # glibc's largest accepted value on 64-bit systems
TRIM_THRESHOLD = 2**30

_done: bool | None = None


def keep_freed_memory() -> bool:
    """Apply the settings once per process; True when they are in force."""
    global _done
    choice = os.environ.get("WORKBENCH_MALLOC", "").strip().lower()
    if choice not in ("", "default"):
        raise ConfigError(f"WORKBENCH_MALLOC = {os.environ['WORKBENCH_MALLOC']!r}: expected 'default' (leave the "
                          "C library's allocator settings alone) or unset (keep freed memory in the process)")
    if _done is not None:
        return _done
    _done = False
    if choice == "default" or platform.system() != "Linux":
        return False
    if platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        ok = libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
        ok = libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1 and ok
    except (OSError, AttributeError):
        return False
    _done = ok
    return ok
