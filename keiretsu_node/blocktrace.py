"""Where a block's time goes, and what pauses a node: an opt-in trace, for measuring only.

Part of keiretsu_node/. With KEIRETSU_BLOCKTRACE=<prefix> in its environment a node appends one
line per event to <prefix>-<node>: a batch cut and its commit (leader), each block's apply in the
worker thread, each Raft log fsync, every garbage collection with its pause, and the event loop's
lateness. Every line starts with the wall-clock time (Unix seconds) so traces of the three nodes
and the load generator's per-second timeline line up. Off, it costs one attribute test per event.
"""

from __future__ import annotations

import gc
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

BLOCKTRACE_ENV = "KEIRETSU_BLOCKTRACE"
# Lines kept in memory between flushes; beyond it lines are dropped (and counted), so a node
# whose flusher stalls cannot grow without bound.
MAX_BUFFERED_LINES = 200_000
# With this also set, every young collection lists what it kept (costly: for finding out only).
GC_SURVIVORS_ENV = "KEIRETSU_BLOCKTRACE_GC_SURVIVORS"
GC_SURVIVOR_TYPES = 20


class BlockTrace:
    def __init__(self) -> None:
        self.path: Path | None = None
        self._lines: list[str] = []
        self._lost = 0
        self._gc_started = 0.0
        self._gc_cpu_started = 0.0
        self._lock = threading.Lock()

    @property
    def on(self) -> bool:
        return self.path is not None

    def start(self, node_name: str) -> None:
        value = os.environ.get(BLOCKTRACE_ENV, "")
        if not value:
            return
        self.path = Path(f"{value}-{node_name}")
        gc.callbacks.append(self._on_gc)

    def stop(self) -> None:
        if self.path is None:
            return
        if self._on_gc in gc.callbacks:
            gc.callbacks.remove(self._on_gc)
        self.flush()
        self.path = None

    def event(self, kind: str, **fields: Any) -> None:
        """One line: wall time, kind, then key=value pairs (called from any thread)."""
        if self.path is None:
            return
        text = " ".join(f"{k}={v}" for k, v in fields.items())
        line = f"{time.time():.6f} {kind} {text}\n"
        with self._lock:
            if len(self._lines) >= MAX_BUFFERED_LINES:
                self._lost += 1
                return
            self._lines.append(line)

    def flush(self) -> None:
        if self.path is None:
            return
        with self._lock:
            lines, self._lines = self._lines, []
            lost, self._lost = self._lost, 0
        if lost:
            lines.append(f"{time.time():.6f} lost lines={lost}\n")
        if lines:
            with open(self.path, "a", encoding="ascii") as out:
                out.writelines(lines)

    def timed(self, kind: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        """`fn`, each call's wall time written as a `kind` event (wrap only when the trace is on)."""
        def call(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.event(kind, ms=f"{(time.perf_counter() - started) * 1000:.2f}")
        return call

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        # The collector runs in one thread holding the GIL: its thread CPU time is the pause's
        # CPU, where the wall time also counts being descheduled on a busy machine.
        if phase == "start":
            self._gc_started = time.perf_counter()
            self._gc_cpu_started = time.thread_time()
            return
        pause_ms = (time.perf_counter() - self._gc_started) * 1000
        cpu_ms = (time.thread_time() - self._gc_cpu_started) * 1000
        self.event("gc", gen=info.get("generation"), ms=f"{pause_ms:.2f}", cpu_ms=f"{cpu_ms:.2f}",
                   collected=info.get("collected"), thread=threading.current_thread().name)
        if os.environ.get(GC_SURVIVORS_ENV) and info.get("generation") == 0:
            self._survivors()

    def _survivors(self) -> None:
        """What a young collection kept (now in the middle generation), by type and by module."""
        kept = gc.get_objects(generation=1)
        by_type: dict[str, int] = {}
        for obj in kept:
            name = f"{type(obj).__module__}.{type(obj).__qualname__}"
            by_type[name] = by_type.get(name, 0) + 1
        top = sorted(by_type.items(), key=lambda item: -item[1])[:GC_SURVIVOR_TYPES]
        self.event("gc_survivors", total=len(kept), top=",".join(f"{n}:{c}" for n, c in top))


TRACE = BlockTrace()
