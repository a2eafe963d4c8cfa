"""What a trainer on CPU (gloo) needs of its process that a GPU run gets from CUDA's allocator."""

from __future__ import annotations

import ctypes
import logging
import os

log = logging.getLogger("vlmop.pretrain")
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3  # glibc's mallopt parameters


def keep_freed_memory() -> bool:
    """glibc hands every freed block above its mmap threshold back to the kernel, and most of a step's
    tensors are that large: every step then faults their pages in again (tiny model, bf16: a third of
    a step in the kernel). Blocks up to 32 MiB come from the heap and freed memory stays for the next
    step, as CUDA's caching allocator keeps it on a GPU. A threshold set in the environment
    (MALLOC_MMAP_THRESHOLD_) is left alone; returns whether the settings were made."""
    if "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc: its allocator, its defaults
        return False
    done = all(libc.mallopt(option, value) == 1 for option, value in (
        (M_MMAP_THRESHOLD, 32 << 20), (M_TRIM_THRESHOLD, 1 << 30), (M_TOP_PAD, 64 << 20)))  # fmt: skip
    if not done:
        log.warning("glibc refused the allocator settings; each step re-faults its memory")
    return done
