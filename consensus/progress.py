"""What a Raft leader knows about each follower's log: match/next, flow state, in-flight appends.
Mutable bookkeeping owned by the leader in raft.py (etcd raft's tracker.Progress).
"""

from __future__ import annotations

from collections import deque
from enum import Enum


class FlowState(Enum):
    PROBE = "probe"  # one append at a time until we find where the logs match
    REPLICATE = "replicate"  # stream appends optimistically, bounded by Inflights
    SNAPSHOT = "snapshot"  # waiting for a snapshot install to finish


class Inflights:
    """Last indexes of appends sent but not acknowledged; bounded so a slow follower caps memory."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._last_indexes: deque[int] = deque()

    def add(self, last_index: int) -> None:
        if len(self._last_indexes) >= self.capacity:
            raise AssertionError("inflights overflow: caller must check full()")
        self._last_indexes.append(last_index)

    def free_le(self, index: int) -> None:
        while self._last_indexes and self._last_indexes[0] <= index:
            self._last_indexes.popleft()

    def free_first(self) -> None:
        if self._last_indexes:
            self._last_indexes.popleft()

    def reset(self) -> None:
        self._last_indexes.clear()

    def full(self) -> bool:
        return len(self._last_indexes) >= self.capacity

    def __len__(self) -> int:
        return len(self._last_indexes)


class Progress:
    def __init__(self, next_index: int, max_inflight: int, is_learner: bool) -> None:
        self.match = 0
        self.next = next_index
        self.state = FlowState.PROBE
        self.probe_sent = False
        self.pending_snapshot = 0
        self.recent_active = False
        # Leader ticks since this follower was last sent an APPEND or a heartbeat: it is sent a
        # heartbeat when this reaches heartbeat_ticks (raft.py _periodic_heartbeats).
        self.ticks_silent = 0
        self.is_learner = is_learner
        self.inflights = Inflights(max_inflight)

    def __repr__(self) -> str:
        return f"Progress({self.state.value} match={self.match} next={self.next})"

    def _reset_state(self, state: FlowState) -> None:
        self.probe_sent = False
        self.pending_snapshot = 0
        self.state = state
        self.inflights.reset()

    def become_probe(self) -> None:
        if self.state == FlowState.SNAPSHOT:
            pending = self.pending_snapshot
            self._reset_state(FlowState.PROBE)
            self.next = max(self.match + 1, pending + 1)
        else:
            self._reset_state(FlowState.PROBE)
            self.next = self.match + 1

    def become_replicate(self) -> None:
        self._reset_state(FlowState.REPLICATE)
        self.next = self.match + 1

    def become_snapshot(self, snapshot_index: int) -> None:
        self._reset_state(FlowState.SNAPSHOT)
        self.pending_snapshot = snapshot_index

    def is_paused(self) -> bool:
        if self.state == FlowState.PROBE:
            return self.probe_sent
        if self.state == FlowState.REPLICATE:
            return self.inflights.full()
        return True

    def maybe_update(self, index: int) -> bool:
        """An acknowledgement up to index arrived; False if it tells us nothing new."""
        updated = False
        if self.match < index:
            self.match = index
            updated = True
            self.probe_sent = False
        self.next = max(self.next, index + 1)
        return updated

    def optimistic_update(self, last_sent: int) -> None:
        self.next = last_sent + 1

    def maybe_decrease_to(self, rejected: int, match_hint: int) -> bool:
        """A rejection of the append after `rejected`; False if it is stale (reordered)."""
        if self.state == FlowState.REPLICATE:
            if rejected <= self.match:
                return False
            self.next = self.match + 1
            return True
        if self.next - 1 != rejected:
            return False
        self.next = max(min(rejected, match_hint + 1), self.match + 1)
        self.probe_sent = False
        return True
