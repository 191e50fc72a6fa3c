"""Settings of one Raft node, validated once before the core starts (etcd raft's Config.validate).
Ticks are logical: the driver decides how many milliseconds one tick is.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

DEFAULT_ELECTION_TICKS = 10
DEFAULT_HEARTBEAT_TICKS = 1
DEFAULT_MAX_APPEND_BYTES = 1024 * 1024
DEFAULT_MAX_INFLIGHT_APPENDS = 64
DEFAULT_MAX_APPLY_BYTES = 4 * 1024 * 1024
MAX_PENDING_READS = 4096


class ConfigError(ValueError):
    """A setting that cannot work; the message names the field."""


@dataclass(frozen=True)
class RaftConfig:
    node_id: str
    rng: random.Random = field(compare=False, repr=False)  # election jitter; seed it in tests
    election_ticks: int = DEFAULT_ELECTION_TICKS
    heartbeat_ticks: int = DEFAULT_HEARTBEAT_TICKS
    max_append_bytes: int = DEFAULT_MAX_APPEND_BYTES  # per APPEND message
    max_inflight_appends: int = DEFAULT_MAX_INFLIGHT_APPENDS  # per follower
    max_apply_bytes: int = DEFAULT_MAX_APPLY_BYTES  # committed entries per Ready
    pre_vote: bool = True
    check_quorum: bool = True

    def validate(self) -> None:
        if not self.node_id:
            raise ConfigError("node_id must not be empty")
        if self.heartbeat_ticks < 1:
            raise ConfigError("heartbeat_ticks must be >= 1")
        if self.election_ticks <= self.heartbeat_ticks:
            raise ConfigError("election_ticks must be greater than heartbeat_ticks")
        if self.max_inflight_appends < 1:
            raise ConfigError("max_inflight_appends must be >= 1")
        if self.max_append_bytes < 1 or self.max_apply_bytes < 1:
            raise ConfigError("max_append_bytes and max_apply_bytes must be >= 1")
