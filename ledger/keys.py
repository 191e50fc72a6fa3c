"""Ed25519 keys, account addresses and their printable, checksummed form.

Part of ledger/. An address is the first 20 bytes of a domain-separated SHA-256 of the public
key; its text form carries a 4-byte checksum so a mistyped address is rejected, not paid.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import nacl.exceptions
import nacl.signing

PUBLIC_KEY_BYTES = 32
SIGNATURE_BYTES = 64
SEED_BYTES = 32
ADDRESS_BYTES = 20
ADDRESS_PREFIX = "kx"
ADDRESS_TEXT_CHARS = len(ADDRESS_PREFIX) + 39
_ADDRESS_DOMAIN = b"keiretsu/address/v1\x00"
_CHECKSUM_DOMAIN = b"keiretsu/address-checksum/v1\x00"
_CHECKSUM_BYTES = 4
# Addresses recur in every block (the same accounts trade all day): remember recent ones. A
# miss costs ~12 µs (checksum), an entry ~130 bytes: 16,384 keeps the active set, not the state.
ADDRESS_CACHE_ENTRIES = 16_384


class AddressError(ValueError):
    """Text that is not a well-formed Keiretsu address."""


def address_bytes(public_key: bytes) -> bytes:
    if len(public_key) != PUBLIC_KEY_BYTES:
        raise ValueError("an Ed25519 public key is 32 bytes")
    return hashlib.sha256(_ADDRESS_DOMAIN + public_key).digest()[:ADDRESS_BYTES]


def _checksum(raw: bytes) -> bytes:
    return hashlib.sha256(_CHECKSUM_DOMAIN + raw).digest()[:_CHECKSUM_BYTES]


def address_text(raw: bytes) -> str:
    """The printable form: prefix + lowercase base32 (no padding) of address and checksum."""
    if len(raw) != ADDRESS_BYTES:
        raise ValueError("an address is 20 bytes")
    body = base64.b32encode(raw + _checksum(raw)).decode("ascii").rstrip("=").lower()
    return ADDRESS_PREFIX + body


@functools.lru_cache(maxsize=ADDRESS_CACHE_ENTRIES)
def parse_address(text: str) -> bytes:
    """The 20 address bytes of a printable address; AddressError if malformed or mistyped."""
    if not isinstance(text, str) or len(text) != ADDRESS_TEXT_CHARS:
        raise AddressError(f"an address is {ADDRESS_TEXT_CHARS} characters")
    if not text.startswith(ADDRESS_PREFIX):
        raise AddressError(f"an address starts with {ADDRESS_PREFIX!r}")
    body = text[len(ADDRESS_PREFIX):]
    if body != body.lower():
        raise AddressError("an address is lowercase")
    try:
        decoded = base64.b32decode(body.upper() + "=")
    except ValueError as exc:
        raise AddressError("an address is base32") from exc
    raw, check = decoded[:ADDRESS_BYTES], decoded[ADDRESS_BYTES:]
    if _checksum(raw) != check or address_text(raw) != text:
        raise AddressError("address checksum does not match (mistyped?)")
    return raw


def is_address(text: object) -> bool:
    # Most strings asked about (currency codes, ISINs, references) are plainly not addresses:
    # answer those without raising, which the cache of parse_address cannot remember.
    if not isinstance(text, str) or len(text) != ADDRESS_TEXT_CHARS or not text.startswith(ADDRESS_PREFIX):
        return False
    try:
        parse_address(text)  # type: ignore[arg-type]
    except AddressError:
        return False
    return True


@functools.lru_cache(maxsize=ADDRESS_CACHE_ENTRIES)
def address_of(public_key: bytes) -> str:
    """The account address a public key controls by default."""
    return address_text(address_bytes(public_key))


def verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """Strict Ed25519 verification; never raises for a bad signature or key."""
    if len(public_key) != PUBLIC_KEY_BYTES or len(signature) != SIGNATURE_BYTES:
        return False
    try:
        nacl.signing.VerifyKey(public_key).verify(message, signature)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, nacl.exceptions.TypeError):
        return False
    return True


@dataclass(frozen=True, repr=False)
class KeyPair:
    """A signing key. repr() never shows the seed, so a key cannot leak into a log."""

    seed: bytes

    def __post_init__(self) -> None:
        if len(self.seed) != SEED_BYTES:
            raise ValueError("an Ed25519 seed is 32 bytes")

    @classmethod
    def generate(cls) -> KeyPair:
        return cls(os.urandom(SEED_BYTES))

    @property
    def _signing_key(self) -> nacl.signing.SigningKey:
        return nacl.signing.SigningKey(self.seed)

    @property
    def public_key(self) -> bytes:
        return bytes(self._signing_key.verify_key)

    @property
    def address(self) -> str:
        return address_of(self.public_key)

    def sign(self, message: bytes) -> bytes:
        return self._signing_key.sign(message).signature

    def __repr__(self) -> str:
        return f"KeyPair(address={self.address})"

    def save(self, path: Path) -> None:
        """Write the key file with mode 0600 from the first byte (never world-readable)."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(f"keiretsu-ed25519-seed:{self.seed.hex()}\n")

    @classmethod
    def load(cls, path: Path) -> KeyPair:
        text = Path(path).read_text().strip()
        prefix = "keiretsu-ed25519-seed:"
        if not text.startswith(prefix):
            raise ValueError(f"{path}: not a Keiretsu key file")
        try:
            seed = bytes.fromhex(text[len(prefix):])
        except ValueError as exc:
            raise ValueError(f"{path}: key file is damaged") from exc
        return cls(seed)
