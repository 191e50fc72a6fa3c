"""Counters of the p2p transport and the frozen snapshot the node exports as metrics.

PeerCounters is the transport's private mutable tally; TransportStats is what callers see.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class PeerCounters:
    frames_in: int = 0
    frames_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    bad_frames: int = 0
    unhandled_frames: int = 0  # valid frames on a channel nobody registered
    handler_errors: int = 0
    links_established: int = 0
    dial_failures: int = 0


@dataclass(frozen=True)
class PeerStats:
    name: str
    connected: bool
    queued_frames: int
    queued_bytes: int
    dropped_frames: int  # evicted from the full send queue, or refused as larger than it
    frames_in: int
    frames_out: int
    bytes_in: int
    bytes_out: int
    bad_frames: int
    unhandled_frames: int
    handler_errors: int
    links_established: int
    dial_failures: int


@dataclass(frozen=True)
class TransportStats:
    node: str
    peers: tuple[PeerStats, ...]
    auth_failures: int  # connections refused before becoming a link, all reasons
    refusals: tuple[tuple[str, int], ...]  # (RefusalCode value, count), sorted by code

    def peer(self, name: str) -> PeerStats:
        for peer in self.peers:
            if peer.name == name:
                return peer
        raise KeyError(name)

    def refusal_count(self, code: str) -> int:
        return dict(self.refusals).get(code, 0)
