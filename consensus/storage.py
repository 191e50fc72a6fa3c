"""Durable Raft log: hard state, entries and the compaction point in LevelDB (plyvel), fsynced.
Written only by the driver, one synced WriteBatch per Ready, before that Ready's messages leave.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import msgpack
import plyvel

from consensus.log import check
from consensus.messages import ConfState, Entry, EntryType, HardState, SnapshotMeta, packb
from consensus.raft import PersistentState

_HARD_STATE = b"m/hard_state"
_SNAPSHOT = b"m/snapshot"
_SNAPSHOT_PENDING = b"m/snapshot_pending"  # intent record: an app snapshot install is underway
_ENTRY_PREFIX = b"e/"


class LogStore(Protocol):
    def load(self, bootstrap: ConfState) -> tuple[PersistentState, SnapshotMeta | None]: ...

    def save(self, hard_state: HardState | None, entries: Sequence[Entry],
             snapshot: SnapshotMeta | None, sync: bool = True) -> None: ...

    def mark_snapshot_pending(self, meta: SnapshotMeta | None) -> None: ...

    def compact(self, meta: SnapshotMeta) -> None: ...

    def close(self) -> None: ...


def _entry_key(index: int) -> bytes:
    return _ENTRY_PREFIX + index.to_bytes(8, "big")  # big-endian: LevelDB order == log order


def _pack_snapshot(meta: SnapshotMeta) -> bytes:
    out: bytes = msgpack.packb([meta.index, meta.term, list(meta.conf.voters),
                                list(meta.conf.learners)])
    return out


def _unpack_snapshot(raw: bytes) -> SnapshotMeta:
    index, term, voters, learners = msgpack.unpackb(raw)
    return SnapshotMeta(index, term, ConfState(tuple(voters), tuple(learners)))


class LevelDBLogStore:
    """One LevelDB per node for Raft's own records; every write is synced (fsync)."""

    def __init__(self, path: str | Path) -> None:
        Path(path).mkdir(parents=True, exist_ok=True)
        # paranoid_checks: a damaged record fails the open instead of being skipped, which would
        # silently forget a vote or an acknowledged entry.
        self._db = plyvel.DB(str(path), create_if_missing=True, paranoid_checks=True)
        self._snapshot_index = 0
        self._last_index = 0

    def load(self, bootstrap: ConfState) -> tuple[PersistentState, SnapshotMeta | None]:
        """Everything needed to restart, plus a snapshot install that a crash interrupted."""
        raw_hs = self._db.get(_HARD_STATE)
        hs = HardState() if raw_hs is None else HardState(*msgpack.unpackb(raw_hs))
        raw_snap = self._db.get(_SNAPSHOT)
        snap = SnapshotMeta(0, 0, bootstrap) if raw_snap is None else _unpack_snapshot(raw_snap)
        entries: list[Entry] = []
        for key, value in self._db.iterator(prefix=_ENTRY_PREFIX):
            index = int.from_bytes(key[len(_ENTRY_PREFIX):], "big")
            term, kind, data = msgpack.unpackb(value)
            check(index == snap.index + 1 + len(entries), f"stored log has a gap at {index}")
            entries.append(Entry(term, index, EntryType(kind), data))
        self._snapshot_index = snap.index
        self._last_index = snap.index + len(entries)
        raw_pending = self._db.get(_SNAPSHOT_PENDING)
        pending = None if raw_pending is None else _unpack_snapshot(raw_pending)
        return PersistentState(hs, snap, tuple(entries)), pending

    def save(self, hard_state: HardState | None, entries: Sequence[Entry],
             snapshot: SnapshotMeta | None, sync: bool = True) -> None:
        with self._db.write_batch(sync=sync) as batch:
            if snapshot is not None:
                for index in range(self._snapshot_index + 1, self._last_index + 1):
                    batch.delete(_entry_key(index))
                batch.put(_SNAPSHOT, _pack_snapshot(snapshot))
                batch.delete(_SNAPSHOT_PENDING)
                self._snapshot_index = self._last_index = snapshot.index
            if entries:
                first = entries[0].index
                check(self._snapshot_index < first <= self._last_index + 1, "entries leave a gap")
                new_last = entries[-1].index
                for index in range(new_last + 1, self._last_index + 1):
                    batch.delete(_entry_key(index))  # a conflicting suffix is replaced
                for e in entries:
                    batch.put(_entry_key(e.index), packb([e.term, int(e.type), e.data]))
                self._last_index = new_last
            if hard_state is not None:
                batch.put(_HARD_STATE, packb(
                    [hard_state.term, hard_state.vote, hard_state.commit]))

    def mark_snapshot_pending(self, meta: SnapshotMeta | None) -> None:
        if meta is None:
            self._db.delete(_SNAPSHOT_PENDING, sync=True)
        else:
            self._db.put(_SNAPSHOT_PENDING, _pack_snapshot(meta), sync=True)

    def compact(self, meta: SnapshotMeta) -> None:
        if meta.index <= self._snapshot_index:
            return
        with self._db.write_batch(sync=True) as batch:
            for index in range(self._snapshot_index + 1, meta.index + 1):
                batch.delete(_entry_key(index))
            batch.put(_SNAPSHOT, _pack_snapshot(meta))
        self._snapshot_index = meta.index

    def close(self) -> None:
        if not self._db.closed:
            self._db.close()


class MemoryLogStore:
    """The same contract in memory: for tests and for benchmarks that measure without a disk."""

    def __init__(self) -> None:
        self.hard_state = HardState()
        self.snapshot: SnapshotMeta | None = None
        self.entries: list[Entry] = []
        self.pending: SnapshotMeta | None = None

    def load(self, bootstrap: ConfState) -> tuple[PersistentState, SnapshotMeta | None]:
        snap = self.snapshot or SnapshotMeta(0, 0, bootstrap)
        return PersistentState(self.hard_state, snap, tuple(self.entries)), self.pending

    def save(self, hard_state: HardState | None, entries: Sequence[Entry],
             snapshot: SnapshotMeta | None, sync: bool = True) -> None:
        if snapshot is not None:
            self.snapshot, self.entries, self.pending = snapshot, [], None
        if entries:
            base = self.snapshot.index if self.snapshot else 0
            del self.entries[entries[0].index - base - 1:]
            self.entries.extend(entries)
        if hard_state is not None:
            self.hard_state = hard_state

    def mark_snapshot_pending(self, meta: SnapshotMeta | None) -> None:
        self.pending = meta

    def compact(self, meta: SnapshotMeta) -> None:
        base = self.snapshot.index if self.snapshot else 0
        if meta.index > base:
            del self.entries[: meta.index - base]
            self.snapshot = meta

    def close(self) -> None:
        pass
