"""The in-memory view of one node's Raft log: entries after the last compaction point.
Tracks what is persisted (stable), committed and handed to the application; pure, used by raft.py.
"""

from __future__ import annotations

import bisect
import itertools

from consensus.messages import ConfState, Entry, SnapshotMeta


class LogInvariantError(AssertionError):
    """A Raft log rule broke: a bug of ours (or a corrupted disk), never a peer's input."""


def check(condition: bool, what: str) -> None:
    # Raised explicitly rather than via `assert` so the check survives `python -O`.
    if not condition:
        raise LogInvariantError(what)


class RaftLog:
    """Entries (snapshot.index, last_index]; indexes at or below the snapshot are compacted."""

    def __init__(self, snapshot: SnapshotMeta, entries: list[Entry], committed: int,
                 applied: int) -> None:
        check(all(e.index == snapshot.index + 1 + i for i, e in enumerate(entries)),
              "stored entries are not contiguous after the snapshot")
        self.snapshot = snapshot
        self.entries = list(entries)
        # Byte accounting, so compaction can be bounded in bytes with O(1) queries: _ends[i] is
        # the running total of size_bytes() up to and including entries[i], counted from an
        # arbitrary origin; _floor is that total at the compaction point.
        self._floor = 0
        self._ends = list(itertools.accumulate(e.size_bytes() for e in self.entries))
        # The app only applies committed entries, so its applied index bounds commit from
        # below even when the latest commit index was written without fsync.
        self.committed = max(committed, applied, snapshot.index)
        self.applied = max(applied, snapshot.index)
        self.stable_index = self.last_index()  # everything loaded came from disk
        self.pending_snapshot: SnapshotMeta | None = None  # received, not yet installed
        check(self.committed <= self.last_index(), "commit index beyond the log")
        check(self.applied <= self.committed, "applied beyond commit")

    # -- queries ---------------------------------------------------------------------------

    def first_index(self) -> int:
        return self.snapshot.index + 1

    def last_index(self) -> int:
        return self.snapshot.index + len(self.entries)

    def last_term(self) -> int:
        return self.entries[-1].term if self.entries else self.snapshot.term

    def term(self, index: int) -> int | None:
        """The term at index, or None when it is compacted away or not yet written."""
        if index == self.snapshot.index:
            return self.snapshot.term
        if index < self.snapshot.index or index > self.last_index():
            return None
        return self.entries[index - self.snapshot.index - 1].term

    def bytes_through(self, index: int) -> int:
        """Bytes (Entry.size_bytes) held in memory for the entries (snapshot.index, index]."""
        check(self.snapshot.index <= index <= self.last_index(), "bytes_through outside the log")
        if index == self.snapshot.index:
            return 0
        return self._ends[index - self.snapshot.index - 1] - self._floor

    def size_bytes(self) -> int:
        """Bytes of every entry held in memory (applied or not)."""
        return self.bytes_through(self.last_index())

    def compaction_target(self, applied: int, keep_entries: int, keep_bytes: int) -> int:
        """The highest index at or below applied that can be compacted while keeping a tail
        (target, applied] of at most keep_entries entries and at most keep_bytes bytes."""
        check(self.snapshot.index <= applied <= self.last_index(), "applied outside the log")
        by_count = applied - keep_entries
        # The smallest t with bytes (t, applied] <= keep_bytes: running total at t must reach
        # total(applied) - keep_bytes. _ends is non-decreasing (sizes are positive).
        total_at_applied = self._floor + self.bytes_through(applied)
        first = bisect.bisect_left(self._ends, total_at_applied - keep_bytes,
                                   0, applied - self.snapshot.index)
        by_bytes = self.snapshot.index + first + 1
        if total_at_applied - keep_bytes <= self._floor:
            by_bytes = self.snapshot.index  # the whole applied part fits in the tail
        return max(self.snapshot.index, min(applied, max(by_count, by_bytes)))

    def match_term(self, index: int, term: int) -> bool:
        return self.term(index) == term

    def is_up_to_date(self, last_index: int, last_term: int) -> bool:
        """Raft §5.4.1: a candidate's log is at least as up-to-date as ours."""
        return last_term > self.last_term() or (
            last_term == self.last_term() and last_index >= self.last_index())

    def slice(self, lo: int, hi: int, max_bytes: int) -> list[Entry] | None:
        """Entries [lo, hi), at least one if any, at most max_bytes; None if lo is compacted."""
        if lo < self.first_index():
            return None
        hi = min(hi, self.last_index() + 1)
        out: list[Entry] = []
        size = 0
        base = self.snapshot.index + 1
        for i in range(lo, hi):
            ent = self.entries[i - base]
            size += ent.size_bytes()
            if out and size > max_bytes:
                break
            out.append(ent)
        return out

    def unstable_entries(self) -> list[Entry]:
        return self.entries[self.stable_index - self.snapshot.index:]

    def next_committed_entries(self, max_bytes: int) -> list[Entry]:
        if self.pending_snapshot is not None:
            return []  # the snapshot must be installed before anything after it is applied
        # Committed entries may still be unstable: the Ready that hands them out also carries
        # them to persist, and the driver persists before it applies.
        got = self.slice(self.applied + 1, self.committed + 1, max_bytes)
        return got or []

    def find_conflict(self, entries: tuple[Entry, ...]) -> int:
        """Index of the first entry that is new or conflicts (same index, other term); 0 if none."""
        for ent in entries:
            if not self.match_term(ent.index, ent.term):
                return ent.index
        return 0

    def find_conflict_by_term(self, index: int, term: int) -> tuple[int, int]:
        """Largest i <= index whose term is <= term (etcd's fast backtracking hint)."""
        index = min(index, self.last_index())
        while index > self.snapshot.index:
            our = self.term(index)
            if our is not None and our <= term:
                return index, our
            index -= 1
        return index, 0 if index < self.snapshot.index else self.snapshot.term

    def conf_at(self, index: int, initial: ConfState) -> ConfState:
        """Membership after applying the log up to index, starting from the snapshot's."""
        from consensus.membership import apply_conf_change, conf_change_of  # local: avoid cycle

        check(self.snapshot.index <= index <= self.last_index(), "conf_at outside the log")
        conf = initial
        for ent in self.entries[: index - self.snapshot.index]:
            cc = conf_change_of(ent)
            if cc is not None:
                conf = apply_conf_change(conf, cc)
        return conf

    # -- mutations -------------------------------------------------------------------------

    def append(self, entries: list[Entry]) -> None:
        """Truncate at the first entry's index and append; only called at a real conflict/end."""
        if not entries:
            return
        after = entries[0].index - 1
        check(after >= self.committed, f"truncating committed entries (after={after})")
        check(after <= self.last_index(), "appending with a gap")
        del self.entries[after - self.snapshot.index:]
        del self._ends[after - self.snapshot.index:]
        total = self._ends[-1] if self._ends else self._floor
        for e in entries:
            total += e.size_bytes()
            self._ends.append(total)
        self.entries.extend(entries)
        self.stable_index = min(self.stable_index, after)

    def maybe_append(self, index: int, log_term: int, committed: int,
                     entries: tuple[Entry, ...]) -> int | None:
        """Raft §5.3 receiver rules; returns the last index now known to match, None on reject."""
        if not self.match_term(index, log_term):
            return None
        last_new = index + len(entries)
        conflict = self.find_conflict(entries)
        if conflict:
            check(conflict > self.committed, "conflict with a committed entry")
            self.append(list(entries[conflict - index - 1:]))
        self.commit_to(min(committed, last_new))
        return last_new

    def commit_to(self, index: int) -> None:
        if index > self.committed:
            check(index <= self.last_index(), f"commit {index} beyond last {self.last_index()}")
            self.committed = index

    def maybe_commit(self, index: int, term: int) -> bool:
        """Raft §5.4.2: a leader commits only an entry of its current term by counting."""
        if index > self.committed and self.term(index) == term:
            self.commit_to(index)
            return True
        return False

    def applied_to(self, index: int) -> None:
        check(self.applied <= index <= self.committed, "applied out of range")
        self.applied = index

    def stable_to(self, index: int, term: int) -> None:
        if self.match_term(index, term) and index > self.stable_index:
            self.stable_index = index

    def restore(self, snapshot: SnapshotMeta) -> None:
        """Drop everything and start after a received snapshot (installed on the next Ready)."""
        self.snapshot = snapshot
        self.entries = []
        self._ends = []
        self._floor = 0
        self.committed = snapshot.index
        self.stable_index = snapshot.index
        self.pending_snapshot = snapshot

    def snapshot_installed(self, snapshot: SnapshotMeta) -> None:
        if self.pending_snapshot == snapshot:
            self.pending_snapshot = None
            self.applied = max(self.applied, snapshot.index)

    def compact(self, index: int, conf: ConfState) -> SnapshotMeta:
        """Forget entries up to index (already applied); returns the new compaction point."""
        check(self.snapshot.index < index <= self.applied, "compacting unapplied entries")
        check(index <= self.stable_index, "compacting entries not yet on disk")
        term = self.term(index)
        check(term is not None, "compacting an unknown index")
        assert term is not None
        dropped = index - self.snapshot.index
        self._floor = self._ends[dropped - 1]
        self.entries = self.entries[dropped:]
        self._ends = self._ends[dropped:]
        self.snapshot = SnapshotMeta(index, term, conf)
        return self.snapshot
