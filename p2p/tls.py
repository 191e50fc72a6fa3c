"""TLS 1.3 contexts for p2p links: mutual authentication against the genesis certificates.

OpenSSL trusts only the self-signed certificates genesis lists (each is its own anchor) and
both sides must present one; handshake.check_hello then pins the exact certificate per name.
"""

from __future__ import annotations

import ssl
import tempfile
from pathlib import Path

from p2p.identity import CERT_FILE_NAME, KEY_FILE_NAME, NodeIdentity, PeerInfo


def server_context(identity: NodeIdentity, peers: list[PeerInfo]) -> ssl.SSLContext:
    return _context(ssl.PROTOCOL_TLS_SERVER, identity, peers)


def client_context(identity: NodeIdentity, peers: list[PeerInfo]) -> ssl.SSLContext:
    return _context(ssl.PROTOCOL_TLS_CLIENT, identity, peers)


def _context(protocol: int, identity: NodeIdentity, peers: list[PeerInfo]) -> ssl.SSLContext:
    context = ssl.SSLContext(protocol)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    # Identity is the pinned certificate, not a host name: nodes are reached by IP or by names
    # the operator chose, and the pin is strictly stronger than a hostname match.
    context.check_hostname = False
    context.verify_mode = ssl.CERT_REQUIRED
    if peers:  # a one-node network trusts nobody, and OpenSSL refuses an empty bundle
        context.load_verify_locations(cadata="".join(peer.cert_pem for peer in peers))
    _load_identity(context, identity)
    return context


def _load_identity(context: ssl.SSLContext, identity: NodeIdentity) -> None:
    # Python's ssl loads a key only from a file. The directory is private (0700), the key file
    # 0600, and both are removed as soon as OpenSSL has read them.
    with tempfile.TemporaryDirectory(prefix="keiretsu-tls-") as folder:
        identity.save(folder)
        context.load_cert_chain(Path(folder) / CERT_FILE_NAME, Path(folder) / KEY_FILE_NAME)


def peer_certificate_der(ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> bytes | None:
    if ssl_object is None:
        return None
    return ssl_object.getpeercert(binary_form=True)
