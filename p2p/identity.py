"""Node identity for p2p links: an Ed25519 node key and the self-signed certificate bound to it.

The operator's bootstrap writes one identity per node; genesis lists each node's PeerInfo,
whose certificate is what every other node pins (see docs/P2P.md).
"""

from __future__ import annotations

import datetime
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import NameOID

KEY_FILE_NAME = "node_key.pem"
CERT_FILE_NAME = "node_cert.pem"
KEY_FILE_MODE = 0o600
MAX_NODE_NAME_BYTES = 64

# Fixed validity so that a certificate is a pure function of (name, key): two machines with
# skewed clocks never disagree on whether it is valid yet, and regenerating it gives the same
# DER bytes that genesis pins. 9999-12-31 is RFC 5280's "no well-defined expiration date".
# Rotation happens by changing genesis, not by expiry.
CERT_NOT_BEFORE = datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)
CERT_NOT_AFTER = datetime.datetime(9999, 12, 31, 23, 59, 59, tzinfo=datetime.UTC)


class IdentityError(Exception):
    """An identity on disk or a peer entry is unusable; the message names the file or field."""


@dataclass(frozen=True)
class PeerInfo:
    """One node as genesis names it: where to reach it and the certificate it must present."""

    name: str
    host: str
    port: int
    cert_pem: str

    def __post_init__(self) -> None:
        check_node_name(self.name)
        if not self.host:
            raise IdentityError(f"peer {self.name!r}: host is empty")
        if not 0 <= self.port <= 65535:
            raise IdentityError(f"peer {self.name!r}: port {self.port} out of range")
        try:
            cert = x509.load_pem_x509_certificate(self.cert_pem.encode("ascii"))
        except ValueError as exc:
            raise IdentityError(f"peer {self.name!r}: cert_pem is not a PEM certificate") from exc
        if certificate_node_name(cert) != self.name:
            raise IdentityError(f"peer {self.name!r}: certificate names another node")

    @property
    def cert_der(self) -> bytes:
        return pem_to_der(self.cert_pem)


def check_node_name(name: str) -> None:
    encoded = name.encode("utf-8")
    if not encoded or len(encoded) > MAX_NODE_NAME_BYTES or not name.isprintable():
        raise IdentityError(f"node name {name!r} must be 1..{MAX_NODE_NAME_BYTES} printable bytes")


def pem_to_der(cert_pem: str) -> bytes:
    cert = x509.load_pem_x509_certificate(cert_pem.encode("ascii"))
    return cert.public_bytes(serialization.Encoding.DER)


def certificate_node_name(cert: x509.Certificate) -> str:
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(names) != 1 or not isinstance(names[0].value, str):
        raise IdentityError("certificate must carry exactly one common name")
    return names[0].value


def self_signed_certificate(name: str, key: Ed25519PrivateKey) -> x509.Certificate:
    """The certificate of a node: deterministic in (name, key), since Ed25519 signing is."""
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    public_raw = key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    # Serial from the key, not from randomness, so regeneration is reproducible; 159 bits keeps
    # it positive and within RFC 5280's 20-octet limit.
    serial = int.from_bytes(hashlib.sha256(public_raw).digest()[:20], "big") >> 1
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(CERT_NOT_BEFORE)
        .not_valid_after(CERT_NOT_AFTER)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(_dns_label(name))]), False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
    )
    return builder.sign(key, algorithm=None)


def _dns_label(name: str) -> str:
    # The SAN is informational (peers pin the whole certificate, not a host name); keep it a
    # syntactically valid DNS label whatever the node name contains.
    label = "".join(c if c.isascii() and (c.isalnum() or c == "-") else "-" for c in name)
    return label.strip("-")[:63] or "node"


@dataclass(frozen=True)
class NodeIdentity:
    """A node's name, its Ed25519 private key and its certificate. Never log or repr the key."""

    name: str
    private_key: Ed25519PrivateKey
    certificate: x509.Certificate

    def __repr__(self) -> str:
        return f"NodeIdentity(name={self.name!r}, public_key_hex={self.public_key_hex!r})"

    @classmethod
    def generate(cls, name: str) -> NodeIdentity:
        check_node_name(name)
        key = Ed25519PrivateKey.generate()
        return cls(name, key, self_signed_certificate(name, key))

    @classmethod
    def from_private_key(cls, name: str, key: Ed25519PrivateKey) -> NodeIdentity:
        check_node_name(name)
        return cls(name, key, self_signed_certificate(name, key))

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> NodeIdentity:
        folder = Path(directory)
        key_path, cert_path = folder / KEY_FILE_NAME, folder / CERT_FILE_NAME
        try:
            key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
            cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        except (OSError, ValueError) as exc:
            raise IdentityError(f"cannot read node identity in {folder}: {exc}") from exc
        if not isinstance(key, Ed25519PrivateKey):
            raise IdentityError(f"{key_path} is not an Ed25519 key")
        if cert.public_key() != key.public_key():
            raise IdentityError(f"{cert_path} does not belong to the key in {key_path}")
        return cls(certificate_node_name(cert), key, cert)

    def save(self, directory: str | os.PathLike[str]) -> None:
        """Write the key (created 0600, so never readable by others, even briefly) and the cert."""
        folder = Path(directory)
        folder.mkdir(parents=True, exist_ok=True)
        key_path = folder / KEY_FILE_NAME
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
        fd = os.open(key_path, flags, KEY_FILE_MODE)
        with os.fdopen(fd, "wb") as key_file:
            key_file.write(self.private_key_pem)
        os.chmod(key_path, KEY_FILE_MODE)  # O_CREAT's mode is ignored for an existing file
        (folder / CERT_FILE_NAME).write_text(self.certificate_pem, encoding="ascii")

    @property
    def private_key_pem(self) -> bytes:
        return self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    @property
    def certificate_pem(self) -> str:
        return self.certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")

    @property
    def certificate_der(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.DER)

    @property
    def public_key_hex(self) -> str:
        raw = self.private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        return raw.hex()

    def peer_info(self, host: str, port: int) -> PeerInfo:
        return PeerInfo(self.name, host, port, self.certificate_pem)
