"""Typed refusals the Raft core returns to its caller (not bugs): a proposal, read or change
that this node cannot take now. Codes are stable; callers switch on them, never on text.
"""

from __future__ import annotations

from enum import IntEnum


class RefusalCode(IntEnum):
    NOT_LEADER = 1
    LEADER_TRANSFER_IN_PROGRESS = 2
    CONF_CHANGE_PENDING = 3
    INVALID_CONF_CHANGE = 4
    TOO_MANY_PENDING_READS = 5
    ENTRY_TOO_LARGE = 6


class ProposalRefused(Exception):
    def __init__(self, code: RefusalCode, leader_hint: str = "") -> None:
        super().__init__(f"{code.name} (leader hint: {leader_hint or 'unknown'})")
        self.code = code
        self.leader_hint = leader_hint
