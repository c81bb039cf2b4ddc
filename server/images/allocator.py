"""Makes freed image buffers go back to the system, so the memory budget bounds RSS, not only live bytes.

glibc serves a freed block again from the arena of the thread that freed it, and raises its mmap threshold
after each large free (up to 32 MiB). Pillow allocates images in 16 MiB blocks, so with many worker
threads each arena kept the largest image it ever decoded: 48 calls of one 6000x6000 GIF, one at a time,
left about 3 GiB resident. A fixed threshold puts every block of 1 MiB or more in its own mapping, which
free() unmaps at once.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3  # mallopt parameter numbers from glibc's malloc.h
MMAP_THRESHOLD_BYTES = 1024 * 1024


def return_large_frees_to_the_system() -> bool:
    """Sets glibc's mmap threshold (fixed, so it no longer adapts); False where there is no glibc."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        done = bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))
    except (OSError, AttributeError, TypeError):
        done = False
    if not done:
        log.info("the C library has no mallopt: freed image memory may stay resident")
    return done
