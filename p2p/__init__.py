"""Keiretsu p2p: authenticated node-to-node links carrying opaque payloads on named channels.

Used by keiretsu_node (Raft via consensus's driver, forwarded transactions); see docs/P2P.md.
"""

from p2p.config import TransportConfig
from p2p.handshake import RefusalCode
from p2p.identity import IdentityError, NodeIdentity, PeerInfo
from p2p.stats import PeerStats, TransportStats
from p2p.transport import Transport

__all__ = [
    "IdentityError",
    "NodeIdentity",
    "PeerInfo",
    "PeerStats",
    "RefusalCode",
    "Transport",
    "TransportConfig",
    "TransportStats",
]
