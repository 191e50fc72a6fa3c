"""Who is on the other end of a p2p link: the hello message and the certificate pin check.

Sans-IO rules applied by Link setup after TLS: a link is accepted only when the peer's TLS
certificate is byte-for-byte the one genesis pins for the node its hello names.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import msgpack

from p2p.frame import Frame
from p2p.identity import PeerInfo

PROTOCOL_VERSION = 1
HELLO_CHANNEL = "p2p.hello"
PING_CHANNEL = "p2p.ping"
RESERVED_CHANNEL_PREFIX = "p2p."
MAX_CHAIN_ID_BYTES = 128
MAX_HELLO_NAME_BYTES = 64


class RefusalCode(enum.Enum):
    """Why a connection was refused before it became a link; stable values for logs/metrics."""

    TLS_HANDSHAKE = "tls_handshake_failed"  # includes certificates genesis does not trust
    CERT_NOT_PINNED = "cert_not_pinned"
    NAME_MISMATCH = "name_mismatch"
    CHAIN_MISMATCH = "chain_mismatch"
    BAD_HELLO = "bad_hello"
    VERSION_MISMATCH = "version_mismatch"
    WRONG_DIALER = "wrong_dialer"
    HANDSHAKE_TIMEOUT = "handshake_timeout"
    FIRST_BYTES_TIMEOUT = "first_bytes_timeout"  # silent after accept: no TLS ClientHello
    TOO_MANY_PENDING = "too_many_pending_handshakes"  # evicted, oldest first, for a newcomer
    CONNECTION_LOST = "connection_lost_in_handshake"


@dataclass(frozen=True)
class Hello:
    """First frame each side sends on a fresh TLS session: who I claim to be, on which chain."""

    protocol_version: int
    node_name: str
    chain_id: str

    def to_frame(self) -> Frame:
        body = msgpack.packb([self.protocol_version, self.node_name, self.chain_id])
        return Frame(HELLO_CHANNEL, body)

    @classmethod
    def from_frame(cls, frame: Frame) -> Hello | None:
        """The hello a frame carries, or None if it is anything else (the link is refused)."""
        if frame.channel != HELLO_CHANNEL:
            return None
        try:
            value = msgpack.unpackb(
                frame.payload,
                raw=False,
                max_str_len=max(MAX_CHAIN_ID_BYTES, MAX_HELLO_NAME_BYTES),
                max_bin_len=0,
                max_array_len=3,
                max_map_len=0,
                max_ext_len=0,
            )
        # Untrusted bytes: any msgpack failure means "not a hello", never an exception upward.
        except Exception:  # noqa: BLE001
            return None
        if not (isinstance(value, list) and len(value) == 3):
            return None
        version, name, chain_id = value
        if not (isinstance(version, int) and isinstance(name, str) and isinstance(chain_id, str)):
            return None
        return cls(version, name, chain_id)


class PinSet:
    """The certificates genesis names, by node name and by DER bytes."""

    def __init__(self, peers: list[PeerInfo]) -> None:
        self._der_by_name: dict[str, bytes] = {}
        self._name_by_der: dict[bytes, str] = {}
        for peer in peers:
            der = peer.cert_der
            if peer.name in self._der_by_name or der in self._name_by_der:
                raise ValueError(f"genesis names node {peer.name!r} or its certificate twice")
            self._der_by_name[peer.name] = der
            self._name_by_der[der] = peer.name

    def name_of(self, cert_der: bytes) -> str | None:
        return self._name_by_der.get(cert_der)

    def der_of(self, name: str) -> bytes | None:
        return self._der_by_name.get(name)


def check_hello(
    hello: Hello | None,
    peer_cert_der: bytes,
    expected_name: str | None,
    chain_id: str,
    pins: PinSet,
) -> RefusalCode | None:
    """None if the peer is who it says; expected_name is known when we dialled it.

    The certificate decides identity: TLS proved the peer holds that certificate's key, and the
    pin maps the certificate to exactly one genesis node. The hello must name that same node.
    """
    if hello is None:
        return RefusalCode.BAD_HELLO
    if hello.protocol_version != PROTOCOL_VERSION:
        return RefusalCode.VERSION_MISMATCH
    if hello.chain_id != chain_id:
        return RefusalCode.CHAIN_MISMATCH
    pinned_name = pins.name_of(peer_cert_der)
    if pinned_name is None:
        return RefusalCode.CERT_NOT_PINNED
    if hello.node_name != pinned_name:
        return RefusalCode.NAME_MISMATCH
    if expected_name is not None and pinned_name != expected_name:
        return RefusalCode.NAME_MISMATCH
    return None


def dials(own_name: str, peer_name: str) -> bool:
    """Exactly one side of each pair opens the link: the node whose name sorts lower."""
    return own_name < peer_name
