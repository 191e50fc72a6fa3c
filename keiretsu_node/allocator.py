"""How a node's process uses the C allocator (glibc malloc): fewer arenas, memory handed back.

Part of keiretsu_node/. Measured at 100,000 accounts (keiretsu_node/memtrace.py and
/proc/<pid>/smaps, tracing on): of ~280 MiB resident per node ~50 MiB were live Python objects; the rest
was glibc's per-thread arenas (LevelDB's compaction thread, the Raft log writer and signature
threads each get one) and pymalloc and heap pages kept after large batches were freed. These
settings are process-wide and harmless where glibc is absent (they are then skipped).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import time

# mallopt parameters (glibc's malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8

# Two arenas for a node's threads instead of up to 8 per core: less memory parked in each.
MALLOC_ARENAS = 2
# Allocations from this size on get their own mapping, returned to the system when freed (glibc
# otherwise raises the threshold to 32 MiB after the first large free, and the batches, blocks and
# LevelDB write batches a node handles are then carved from the heap and left there).
MMAP_THRESHOLD_BYTES = 256 * 1024
TRIM_THRESHOLD_BYTES = 4 * 1024 * 1024
# How often freed pages inside the arenas are returned (malloc_trim walks every arena).
TRIM_INTERVAL_S = 2.0


class Allocator:
    """glibc's malloc, tuned once per process, trimmed now and then; a no-op elsewhere."""

    def __init__(self) -> None:
        self._libc: ctypes.CDLL | None = None
        self._last_trim_s = 0.0
        self.trims = 0
        self.trim_seconds = 0.0
        name = ctypes.util.find_library("c")
        if name is None:
            return
        try:
            libc = ctypes.CDLL(name)
        except OSError:
            return
        if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim"):
            self._libc = libc

    @property
    def available(self) -> bool:
        return self._libc is not None

    def configure(self) -> None:
        """Call before the process starts its threads: an arena already made stays."""
        if self._libc is None:
            return
        self._libc.mallopt(_M_ARENA_MAX, MALLOC_ARENAS)
        self._libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
        self._libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)

    def maybe_trim(self, now_s: float) -> None:
        """Hand free pages back to the system if TRIM_INTERVAL_S passed since the last time."""
        if self._libc is None or now_s - self._last_trim_s < TRIM_INTERVAL_S:
            return
        started = time.perf_counter()
        self._libc.malloc_trim(0)
        self._last_trim_s = now_s
        self.trims += 1
        self.trim_seconds += time.perf_counter() - started
