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

import nacl.bindings
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
# miss costs ~2 µs (checksum, decoding below), an entry ~130 bytes: 16,384 keeps the active set.
ADDRESS_CACHE_ENTRIES = 16_384
# At 1,000,000 accounts most addresses miss that cache, so the text form is built and read
# with C-level steps (int(…, 32), bytes.translate) instead of base64's per-5-byte Python loop:
# 9.6 -> 1.9 µs per uncached parse_address (docs/PERFORMANCE.md, third session). RFC 4648
# base32 digit d is the d-th letter of this alphabet, and int(…, 32) reads digit d as the d-th
# of "0-9a-v": the table maps one onto the other and anything else onto a byte int() refuses.
_BASE32_ALPHABET = b"abcdefghijklmnopqrstuvwxyz234567"
_INT32_DIGITS = b"0123456789abcdefghijklmnopqrstuv"
_NOT_A_DIGIT = b"!"
_BASE32_TO_INT32 = bytes(
    _INT32_DIGITS[_BASE32_ALPHABET.index(c)] if c in _BASE32_ALPHABET else _NOT_A_DIGIT[0] for c in range(256)
)
_BODY_CHARS = ADDRESS_TEXT_CHARS - len(ADDRESS_PREFIX)
_BODY_BITS = _BODY_CHARS * 5
_PAD_BITS = _BODY_BITS - 8 * (ADDRESS_BYTES + _CHECKSUM_BYTES)  # zero bits closing the last digit
_DIGIT_PAIRS = tuple(chr(_BASE32_ALPHABET[i >> 5]) + chr(_BASE32_ALPHABET[i & 31]) for i in range(1024))


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
    number = int.from_bytes(raw + _checksum(raw), "big") << _PAD_BITS
    # Two digits (10 bits) per step from the top, then the odd last digit.
    pairs = [_DIGIT_PAIRS[(number >> shift) & 1023] for shift in range(_BODY_BITS - 10, 4, -10)]
    return ADDRESS_PREFIX + "".join(pairs) + chr(_BASE32_ALPHABET[number & 31])


@functools.lru_cache(maxsize=ADDRESS_CACHE_ENTRIES)
def parse_address(text: str) -> bytes:
    """The 20 address bytes of a printable address; AddressError if malformed or mistyped."""
    raw = _parse_canonical(text)
    if raw is not None:
        return raw
    return _parse_or_explain(text)


def _parse_canonical(text: object) -> bytes | None:
    """The address bytes if `text` is a well-formed address, else None (and no reason why).

    Accepts exactly what _parse_or_explain accepts: prefix, 39 lowercase base32 digits whose
    closing pad bits are zero (the one text address_text gives for these bytes), checksum.
    """
    if type(text) is not str or len(text) != ADDRESS_TEXT_CHARS or not text.startswith(ADDRESS_PREFIX):
        return None
    if not text.isascii():
        return None
    digits = text[len(ADDRESS_PREFIX):].encode("ascii").translate(_BASE32_TO_INT32)
    if _NOT_A_DIGIT in digits:
        return None
    number = int(digits, 32)
    if number & ((1 << _PAD_BITS) - 1):
        return None
    decoded = (number >> _PAD_BITS).to_bytes(ADDRESS_BYTES + _CHECKSUM_BYTES, "big")
    raw = decoded[:ADDRESS_BYTES]
    return raw if _checksum(raw) == decoded[ADDRESS_BYTES:] else None


def _parse_or_explain(text: str) -> bytes:
    """The slow path, taken by malformed text: says which rule it breaks (AddressError)."""
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


def is_public_key(data: object) -> bool:
    """32 bytes that libsodium takes as an Ed25519 public key (a canonical point of the curve,
    not of small order): any other 32 bytes can never verify a signature, so a key given to an
    account must pass this (a mistyped one would lock the account). Deterministic everywhere."""
    return (isinstance(data, bytes) and len(data) == PUBLIC_KEY_BYTES
            and nacl.bindings.crypto_core_ed25519_is_valid_point(data))


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
