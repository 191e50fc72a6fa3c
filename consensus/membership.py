"""Cluster membership for Raft: applying one conf change at a time to a ConfState.
Pure functions used by the core (raft.py) and the log view when replaying membership.
"""

from __future__ import annotations

from consensus.messages import ConfChange, ConfChangeType, ConfState, Entry, EntryType


def conf_change_of(entry: Entry) -> ConfChange | None:
    if entry.type != EntryType.CONF_CHANGE:
        return None
    return ConfChange.decode(entry.data)


def apply_conf_change(conf: ConfState, cc: ConfChange) -> ConfState:
    """Single-server change (Raft thesis §4.1); idempotent so a replay after restart is harmless."""
    voters = [v for v in conf.voters if v != cc.node_id]
    learners = [v for v in conf.learners if v != cc.node_id]
    if cc.type == ConfChangeType.ADD_NODE:
        voters.append(cc.node_id)
    elif cc.type == ConfChangeType.ADD_LEARNER:
        if cc.node_id in conf.voters:
            return conf  # demotion is not a single-step change we support
        learners.append(cc.node_id)
    return ConfState(tuple(sorted(voters)), tuple(sorted(learners)))


def quorum(voter_count: int) -> int:
    return voter_count // 2 + 1
