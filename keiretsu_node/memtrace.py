"""Where a node's memory goes: an opt-in tracemalloc report, for measuring, never on by default.

Part of keiretsu_node/. With KEIRETSU_MEMTRACE=<file> in its environment a node traces its Python
allocations and rewrites <file> every MEMTRACE_INTERVAL_S with its RSS and the allocation sites
holding the most; the rest of RSS is C memory (LevelDB, libsodium, OpenSSL) and the allocator's.
Tracing costs CPU and memory, and each snapshot makes a transient peak: a traced run tells where
memory goes, not how fast a node is or how high its peak RSS would be.
"""

from __future__ import annotations

import asyncio
import os
import time
import tracemalloc
from pathlib import Path

MEMTRACE_ENV = "KEIRETSU_MEMTRACE"
MEMTRACE_INTERVAL_S = 15.0
MEMTRACE_TOP_SITES = 40
MEMTRACE_FRAMES = 1


def requested_path() -> Path | None:
    value = os.environ.get(MEMTRACE_ENV, "")
    return Path(value) if value else None


def _status_kib() -> dict[str, int]:
    out: dict[str, int] = {}
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            name, _, rest = line.partition(":")
            if name in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
                out[name] = int(rest.split()[0])
    return out


def report() -> str:
    """RSS and the top allocation sites now, as text."""
    snapshot = tracemalloc.take_snapshot()
    stats = snapshot.statistics("lineno")
    traced = sum(s.size for s in stats)
    status = _status_kib()
    lines = [f"time {time.strftime('%H:%M:%S')} " + " ".join(f"{k} {v / 1024:.1f} MiB" for k, v in status.items()),
             f"traced python {traced / 2**20:.1f} MiB in {sum(s.count for s in stats):,} blocks"]
    for stat in stats[:MEMTRACE_TOP_SITES]:
        frame = stat.traceback[0]
        lines.append(f"{stat.size / 2**20:9.2f} MiB {stat.count:>10,}  {frame.filename}:{frame.lineno}")
    return "\n".join(lines) + "\n"


async def trace_loop(path: Path) -> None:
    """Trace until cancelled, rewriting `path` (and appending the totals to `path`.log)."""
    tracemalloc.start(MEMTRACE_FRAMES)
    try:
        while True:
            await asyncio.sleep(MEMTRACE_INTERVAL_S)
            text = report()
            path.write_text(text)
            with open(f"{path}.log", "a", encoding="utf-8") as log:
                log.write(" | ".join(text.splitlines()[:2]) + "\n")
    finally:
        tracemalloc.stop()
