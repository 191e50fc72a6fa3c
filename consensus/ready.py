"""What the Raft core hands its driver in one batch (etcd raft's Ready) and the small state records.
The driver persists hard_state/entries/snapshot, then sends messages, then applies, then advance()s.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from consensus.messages import Entry, HardState, Message, SnapshotMeta


class Role(Enum):
    FOLLOWER = "follower"
    PRE_CANDIDATE = "pre_candidate"
    CANDIDATE = "candidate"
    LEADER = "leader"


@dataclass(frozen=True, slots=True)
class SoftState:
    leader_id: str  # "" when unknown
    role: Role


@dataclass(frozen=True, slots=True)
class ReadState:
    """A linearizable read may be served once the local apply index reaches index."""

    index: int
    context: bytes


@dataclass(frozen=True, slots=True)
class Ready:
    hard_state: HardState | None  # None: unchanged since the last Ready
    entries_to_persist: tuple[Entry, ...]
    snapshot_to_install: SnapshotMeta | None
    messages: tuple[Message, ...]  # send only after the fields above are on disk
    committed_entries: tuple[Entry, ...]
    read_states: tuple[ReadState, ...]
    soft_state: SoftState | None  # None: unchanged

    def is_empty(self) -> bool:
        return not (self.hard_state or self.entries_to_persist or self.snapshot_to_install
                    or self.messages or self.committed_entries or self.read_states
                    or self.soft_state)
