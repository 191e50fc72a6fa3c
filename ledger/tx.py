"""Transactions: the canonical body, its id, its signing message and the signed envelope.

Part of ledger/. docs/PROTOCOL.md specifies these bytes for clients in other languages; the
checks here are the stateless ones (format, bounds, chain id, signatures) done before ordering.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from ledger import codec
from ledger.frozen import check_buildable, new_record, set_fields
from ledger.keys import PUBLIC_KEY_BYTES, SIGNATURE_BYTES, KeyPair, address_of, verify
from ledger.reasons import Reason, TxRejected

TX_FORMAT_VERSION = 1
MAX_TX_BYTES = 64 * 1024
MAX_SIGNERS = 16
MAX_NAME_CHARS = 64
MAX_CHAIN_ID_CHARS = 64
MAX_NONCE = 2**64 - 1
TX_ID_DOMAIN = b"keiretsu/tx-id/v1\x00"
SIGNING_DOMAIN = b"keiretsu/tx-sign/v1\x00"


@dataclass(frozen=True)
class TxBody:
    """What the signers agree to. Field order here is the canonical order on the wire."""

    chain_id: str
    contract: str
    method: str
    args: dict[str, Any]
    nonce: int
    expires_at_ms: int
    signers: tuple[bytes, ...]

    def to_wire(self) -> list[Any]:
        return [
            TX_FORMAT_VERSION,
            self.chain_id,
            self.contract,
            self.method,
            self.args,
            self.nonce,
            self.expires_at_ms,
            list(self.signers),
        ]

    def encode(self) -> bytes:
        return codec.encode(self.to_wire())

    def signing_message(self) -> bytes:
        """Domain-separated hash that also names the chain, so a signature is valid on one network."""
        return signing_message(self.chain_id, self.encode())


def signing_message(chain_id: str, body_bytes: bytes) -> bytes:
    chain = chain_id.encode("utf-8")
    return hashlib.sha256(SIGNING_DOMAIN + len(chain).to_bytes(1, "big") + chain + body_bytes).digest()


def signatures_verify(chain_id: str, body_bytes: bytes, signers: tuple[bytes, ...],
                      signatures: tuple[bytes, ...]) -> bool:
    """Whether every signer's signature verifies over the body's signing message: the one rule,
    used by SignedTx.verify_signatures and by the signature workers (ledger/sigpool.py)."""
    message = signing_message(chain_id, body_bytes)
    return all(verify(pk, message, sig) for pk, sig in zip(signers, signatures, strict=True))


def tx_id_of(body_bytes: bytes) -> bytes:
    return hashlib.sha256(TX_ID_DOMAIN + body_bytes).digest()


@dataclass(frozen=True)
class SignedTx:
    """A body and one signature per signer, in the signers' order."""

    body: TxBody
    signatures: tuple[bytes, ...]
    raw: bytes = field(compare=False, repr=False)
    body_bytes: bytes = field(compare=False, repr=False)
    tx_id: bytes = field(compare=False)

    @property
    def signer_addresses(self) -> tuple[str, ...]:
        return tuple(address_of(pk) for pk in self.body.signers)

    def verify_signatures(self) -> bool:
        return signatures_verify(self.body.chain_id, self.body_bytes, self.body.signers, self.signatures)


check_buildable(TxBody)
check_buildable(SignedTx)


def sign(body: TxBody, keys: list[KeyPair]) -> SignedTx:
    """Sign a body with the keys of its signers (any order); every signer must be given."""
    by_pk = {key.public_key: key for key in keys}
    missing = [pk.hex() for pk in body.signers if pk not in by_pk]
    if missing:
        raise ValueError(f"no key given for signer(s) {missing}")
    body_bytes = body.encode()
    message = signing_message(body.chain_id, body_bytes)
    signatures = tuple(by_pk[pk].sign(message) for pk in body.signers)
    raw = codec.encode([body.to_wire(), list(signatures)])
    return SignedTx(body, signatures, raw, body_bytes, tx_id_of(body_bytes))


def _is_name(value: Any, max_chars: int) -> bool:
    return isinstance(value, str) and 0 < len(value) <= max_chars and value.isascii() and value.isprintable()


# Chain ids and contract and method names _decode_flat found good: a network has a handful, and
# one set lookup is cheaper than the three checks (three names per transaction). Both bounds are
# the same, so one set serves the three fields; it stops growing when full (names that are not
# in it are still checked, just not remembered).
MAX_KNOWN_NAMES = 1024
_KNOWN_NAMES: set[str] = set()
if MAX_CHAIN_ID_CHARS != MAX_NAME_CHARS:
    raise RuntimeError("_KNOWN_NAMES holds names checked against one bound")


def _is_known_name(value: Any) -> bool:
    """_is_name(value, MAX_NAME_CHARS), remembering the names that pass."""
    if type(value) is not str:
        return False
    if value in _KNOWN_NAMES:
        return True
    if not _is_name(value, MAX_NAME_CHARS):
        return False
    if len(_KNOWN_NAMES) < MAX_KNOWN_NAMES:
        _KNOWN_NAMES.add(value)
    return True


def _body_from_wire(wire: Any) -> TxBody:
    if not isinstance(wire, list) or len(wire) != 8:
        raise TxRejected(Reason.MALFORMED, "a transaction body is an array of 8 fields")
    version, chain_id, contract, method, args, nonce, expires_at_ms, signers = wire
    if version != TX_FORMAT_VERSION or isinstance(version, bool):
        raise TxRejected(Reason.UNSUPPORTED_VERSION, f"format version {version!r}")
    if not _is_name(chain_id, MAX_CHAIN_ID_CHARS):
        raise TxRejected(Reason.MALFORMED, "chain_id must be a printable ASCII string")
    if not _is_name(contract, MAX_NAME_CHARS) or not _is_name(method, MAX_NAME_CHARS):
        raise TxRejected(Reason.MALFORMED, "contract and method must be printable ASCII names")
    if not isinstance(args, dict):
        raise TxRejected(Reason.MALFORMED, "args must be a map")
    for number, name in ((nonce, "nonce"), (expires_at_ms, "expires_at_ms")):
        if not isinstance(number, int) or isinstance(number, bool) or not 0 <= number <= MAX_NONCE:
            raise TxRejected(Reason.MALFORMED, f"{name} must be an unsigned 64-bit integer")
    if not isinstance(signers, list) or not signers:
        raise TxRejected(Reason.MISSING_SIGNATURE, "a transaction names at least one signer")
    if len(signers) > MAX_SIGNERS:
        raise TxRejected(Reason.MALFORMED, f"at most {MAX_SIGNERS} signers")
    if not all(isinstance(pk, bytes) and len(pk) == PUBLIC_KEY_BYTES for pk in signers):
        raise TxRejected(Reason.MALFORMED, "a signer is a 32-byte Ed25519 public key")
    if len(set(signers)) != len(signers):
        raise TxRejected(Reason.DUPLICATE_SIGNER, "a signer is named twice")
    return TxBody(chain_id, contract, method, args, nonce, expires_at_ms, tuple(signers))


def decode_signed(raw: bytes) -> SignedTx:
    """Decode a signed transaction; TxRejected with a stable reason for anything malformed.

    This checks form only, not signatures (see verify_signatures) nor the chain id.
    """
    tx = _decode_flat(raw)
    return tx if tx is not None else _decode_general(raw)


def _decode_flat(raw: bytes) -> SignedTx | None:
    """decode_signed for the common form, whose arguments are all leaves; None for any other.

    Outside the arguments the schema fixes every field's type, so nothing can nest: checking
    the fields, the arguments' keys and the re-encoding proves the canonical form without
    codec.decode's walk of the value. Anything unusual (nested arguments, a float, an error)
    returns None and takes the general path, which gives the same result and names the error;
    tests/test_ledger_tx_fast.py compares the two.
    """
    if len(raw) > MAX_TX_BYTES:
        return None
    try:
        wire = codec.unpack_unordered(raw)
    except codec.CodecError:
        return None
    if type(wire) is not list or len(wire) != 2 or type(wire[0]) is not list or len(wire[0]) != 8:
        return None
    signatures = wire[1]
    version, chain_id, contract, method, args, nonce, expires_at_ms, signers = wire[0]
    known = _KNOWN_NAMES  # the three names' common case in the condition, _is_known_name otherwise
    if (type(version) is not int or version != TX_FORMAT_VERSION
            or not ((type(chain_id) is str and chain_id in known) or _is_known_name(chain_id))
            or not ((type(contract) is str and contract in known) or _is_known_name(contract))
            or not ((type(method) is str and method in known) or _is_known_name(method))
            or type(args) is not dict or not codec.is_leaf_map_sorted(args)
            or type(nonce) is not int or not 0 <= nonce <= MAX_NONCE
            or type(expires_at_ms) is not int or not 0 <= expires_at_ms <= MAX_NONCE
            or type(signers) is not list or not 0 < len(signers) <= MAX_SIGNERS
            or type(signatures) is not list or len(signatures) != len(signers)):
        return None
    for pk in signers:
        if type(pk) is not bytes or len(pk) != PUBLIC_KEY_BYTES:
            return None
    for sig in signatures:
        if type(sig) is not bytes or len(sig) != SIGNATURE_BYTES:
            return None
    if (len(signers) > 1 and len(set(signers)) != len(signers)) or not codec.encodes_to(wire, raw):
        return None
    body = new_record(TxBody)  # built(TxBody, ...) written out: no Python call per transaction
    set_fields(body, "__dict__", {"chain_id": chain_id, "contract": contract, "method": method, "args": args,
                                  "nonce": nonce, "expires_at_ms": expires_at_ms, "signers": tuple(signers)})
    return _signed(body, signatures, raw)


def _signed(body: TxBody, signatures: list[bytes], raw: bytes) -> SignedTx:
    # raw is canonical, so it is a 1-byte array header, the body's canonical bytes, then the
    # signatures array (its header, then per signature bin8 header, length byte, 64 bytes):
    # slicing is cheaper than re-encoding the body.
    signatures_bytes = (1 if len(signatures) <= 15 else 3) + len(signatures) * (2 + SIGNATURE_BYTES)
    body_bytes = raw[1:len(raw) - signatures_bytes]
    signed = new_record(SignedTx)  # built(SignedTx, ...) written out
    set_fields(signed, "__dict__", {"body": body, "signatures": tuple(signatures), "raw": raw,
                                    "body_bytes": body_bytes,
                                    "tx_id": hashlib.sha256(TX_ID_DOMAIN + body_bytes).digest()})  # tx_id_of
    return signed


def _decode_general(raw: bytes) -> SignedTx:
    """decode_signed for any bytes: the reference path, and the one that names every error."""
    if len(raw) > MAX_TX_BYTES:
        raise TxRejected(Reason.TOO_LARGE, f"{len(raw)} bytes, limit {MAX_TX_BYTES}")
    try:
        wire = codec.decode(raw, max_bytes=MAX_TX_BYTES)
    except codec.NonCanonical as exc:
        raise TxRejected(Reason.NON_CANONICAL, str(exc)) from exc
    except codec.CodecError as exc:
        raise TxRejected(Reason.MALFORMED, str(exc)) from exc
    if not isinstance(wire, list) or len(wire) != 2 or not isinstance(wire[1], list):
        raise TxRejected(Reason.MALFORMED, "a signed transaction is [body, signatures]")
    body = _body_from_wire(wire[0])
    signatures = wire[1]
    if len(signatures) != len(body.signers):
        raise TxRejected(Reason.MISSING_SIGNATURE, "one signature per signer is required")
    if not all(isinstance(sig, bytes) and len(sig) == SIGNATURE_BYTES for sig in signatures):
        raise TxRejected(Reason.MALFORMED, "a signature is 64 bytes")
    return _signed(body, signatures, raw)


def check_stateless(raw: bytes, chain_id: str) -> SignedTx:
    """Every check that needs no ledger state: form, bounds, chain id and signatures."""
    tx = decode_signed(raw)
    if tx.body.chain_id != chain_id:
        raise TxRejected(Reason.WRONG_CHAIN, f"signed for chain {tx.body.chain_id!r}, this is {chain_id!r}")
    if not tx.verify_signatures():
        raise TxRejected(Reason.BAD_SIGNATURE, "a signature does not verify")
    return tx
