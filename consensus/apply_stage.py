"""The apply stage: committed entries run through the application in a task of its own.

The Raft loop hands each Ready's committed entries here, in log order, and goes on persisting
and replicating while a block executes (etcd raft's node.go does the same with its apply
channel). This stage applies them one app call at a time, in order, exactly once, and reports
each applied run back to the driver, which resolves what waits on it. A snapshot install runs
through the same lock, so it never overlaps an apply.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Protocol

from consensus.log import check
from consensus.messages import Entry, EntryType

# Committed runs waiting for the app. Each is at most RaftConfig.max_apply_bytes (4 MiB by
# default), so the queue holds at most 64 MiB, all of it still in the Raft log anyway (nothing
# is compacted before it is applied). When full, the Raft loop waits: back-pressure.
MAX_QUEUED_RUNS = 16


class Appliable(Protocol):
    def apply(self, entries: list[Entry]) -> None: ...


class ApplyStage:
    """One consumer task; `applied` is the last index whose run the app has finished (entries
    the app never sees, such as a leader's empty entry or a membership change, count too)."""

    def __init__(self, app: Appliable, applied: int,
                 on_applied: Callable[[list[Entry]], None]) -> None:
        self.applied = applied
        self._app = app
        self._on_applied = on_applied
        self._queue: deque[tuple[Entry, ...]] = deque()
        self._has_work = asyncio.Event()
        self._has_room = asyncio.Event()
        self._app_lock = asyncio.Lock()  # one app call at a time: an apply or an install
        self._stopping = False

    def backlog(self) -> int:
        return len(self._queue)

    async def put(self, entries: tuple[Entry, ...]) -> None:
        """Queue a committed run; waits while MAX_QUEUED_RUNS are already waiting."""
        if not entries:
            return
        while len(self._queue) >= MAX_QUEUED_RUNS and not self._stopping:
            self._has_room.clear()
            await self._has_room.wait()
        if self._stopping:
            return  # committed and on disk: a restart applies it from the app's applied index
        self._queue.append(entries)
        self._has_work.set()

    async def run(self) -> None:
        """The consumer. Ends after the run in progress once stop_soon() was called; raises
        (and lets the driver stop the node) if the app fails."""
        try:
            while True:
                while not self._queue:
                    if self._stopping:
                        return
                    self._has_work.clear()
                    await self._has_work.wait()
                run = self._queue.popleft()
                self._has_room.set()
                async with self._app_lock:
                    await self._apply(run)
        finally:
            self._stopping = True
            self._queue.clear()
            self._has_room.set()  # a Raft loop waiting in put() must not wait for ever

    async def _apply(self, run: tuple[Entry, ...]) -> None:
        fresh = [e for e in run if e.index > self.applied]  # a snapshot install covered the rest
        if not fresh:
            return
        check(fresh[0].index == self.applied + 1,
              f"apply would skip from {self.applied} to {fresh[0].index}")
        for_app = [e for e in fresh if e.type == EntryType.NORMAL and e.data]
        if for_app:
            await asyncio.get_running_loop().run_in_executor(None, self._app.apply, for_app)
        self.applied = fresh[-1].index
        self._on_applied(fresh)

    async def install(self, install: Callable[[], None], index: int) -> None:
        """Run a snapshot install (blocking, in a worker thread) with no apply in progress. A
        node only installs a snapshot beyond its commit index, so every queued run is covered
        by it and is dropped."""
        check(all(run[-1].index <= index for run in self._queue),
              "a queued run goes beyond the snapshot being installed")
        self._queue.clear()
        self._has_room.set()
        async with self._app_lock:
            await asyncio.get_running_loop().run_in_executor(None, install)
            self.applied = max(self.applied, index)

    def stop_soon(self) -> None:
        """Drop what is queued (committed and on disk: a restart applies it again from the
        app's applied index) and end after the app call in progress, never inside it."""
        self._stopping = True
        self._queue.clear()
        self._has_work.set()
        self._has_room.set()
