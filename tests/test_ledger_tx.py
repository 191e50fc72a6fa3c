"""Transactions at the door: every bad input is a TxRejected with its stable reason code."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import codec
from ledger.keys import KeyPair
from ledger.reasons import Reason, TxRejected
from ledger.tx import (
    MAX_SIGNERS,
    MAX_TX_BYTES,
    TX_FORMAT_VERSION,
    SignedTx,
    TxBody,
    check_stateless,
    decode_signed,
    sign,
    signing_message,
    tx_id_of,
)

CHAIN = "keiretsu-test"
ALICE = KeyPair(bytes([1]) * 32)
BOB = KeyPair(bytes([2]) * 32)
ARGS = {"currency": "EUR", "to": BOB.address, "amount": 5}


def body(**changes) -> TxBody:
    fields = {"chain_id": CHAIN, "contract": "cash", "method": "transfer", "args": ARGS, "nonce": 7,
              "expires_at_ms": 1_000, "signers": (ALICE.public_key,)}
    fields.update(changes)
    return TxBody(**fields)


def wire(tx_body: list, signatures: list) -> bytes:
    return codec.encode([tx_body, signatures])


def good_wire() -> tuple[list, list]:
    tx = sign(body(), [ALICE])
    return body().to_wire(), list(tx.signatures)


def rejected(raw: bytes) -> Reason:
    with pytest.raises(TxRejected) as caught:
        check_stateless(raw, CHAIN)
    return caught.value.reason


def test_a_signed_transaction_passes_and_round_trips():
    tx = sign(body(), [ALICE])
    again = check_stateless(tx.raw, CHAIN)
    assert again == tx and again.raw == tx.raw
    assert again.body_bytes == body().encode()
    assert again.tx_id == tx_id_of(body().encode())
    assert again.signer_addresses == (ALICE.address,)


def test_the_id_covers_the_body_not_the_signatures():
    one = sign(body(), [ALICE])
    other_nonce = sign(body(nonce=8), [ALICE])
    assert one.tx_id != other_nonce.tx_id
    # Ed25519 is deterministic: signing twice gives the same bytes and id.
    assert sign(body(), [ALICE]).raw == one.raw


def test_malformed_bytes():
    assert rejected(b"\xc1") == Reason.MALFORMED
    assert rejected(b"") == Reason.MALFORMED
    assert rejected(codec.encode("not a transaction")) == Reason.MALFORMED
    assert rejected(codec.encode([1, 2, 3])) == Reason.MALFORMED
    assert rejected(sign(body(), [ALICE]).raw + b"\x00") == Reason.MALFORMED


def test_non_canonical_encoding_of_a_valid_transaction():
    tx = sign(body(), [ALICE])
    # The same transaction with the nonce 7 written as a uint8 (0xcc 0x07) instead of fixint 7.
    raw = tx.raw
    nonce_at = raw.index(b"\x07" + codec.encode(1_000))
    stretched = raw[:nonce_at] + b"\xcc" + raw[nonce_at:]
    assert rejected(stretched) == Reason.NON_CANONICAL
    # The same transaction with its argument map in unsorted key order.
    body_wire = body().to_wire()
    reordered = dict(reversed(list(ARGS.items())))
    assert list(reordered) != sorted(reordered)
    body_bytes = msgpack.packb(body_wire[:4] + [reordered] + body_wire[5:], use_bin_type=True)
    raw = b"\x92" + body_bytes + codec.encode(list(tx.signatures))
    assert rejected(raw) == Reason.NON_CANONICAL


def test_float_and_extension_values_are_malformed():
    body_wire, sigs = good_wire()
    with_float = msgpack.packb([body_wire[:4] + [{"amount": 5.0}] + body_wire[5:], sigs], use_bin_type=True)
    assert rejected(with_float) == Reason.MALFORMED
    with_ext = msgpack.packb([body_wire[:4] + [{"amount": msgpack.ExtType(1, b"5")}] + body_wire[5:], sigs],
                             use_bin_type=True)
    assert rejected(with_ext) == Reason.MALFORMED


@pytest.mark.parametrize(
    "index, value",
    [
        (1, 42),  # chain id not a string
        (1, ""),  # empty chain id
        (2, "bad\nname"),  # contract not printable
        (3, "x" * 65),  # method too long
        (4, ["not", "a", "map"]),  # args not a map
        (5, -1),  # nonce negative
        (5, True),  # nonce a bool
        (6, "soon"),  # expiry not an integer
        (7, [b"\x01" * 31]),  # signer key of the wrong size
        (7, [b"\x01" * 32] * (MAX_SIGNERS + 1)),  # too many signers
    ],
)
def test_wrong_field_types_are_malformed(index, value):
    body_wire, sigs = good_wire()
    body_wire[index] = value
    assert rejected(wire(body_wire, sigs)) == Reason.MALFORMED


def test_wrong_field_count_is_malformed():
    body_wire, sigs = good_wire()
    assert rejected(wire(body_wire + [0], sigs)) == Reason.MALFORMED
    assert rejected(wire(body_wire[:-1], sigs)) == Reason.MALFORMED
    assert rejected(codec.encode([body_wire, sigs, b"extra"])) == Reason.MALFORMED


def test_unknown_format_version():
    body_wire, sigs = good_wire()
    body_wire[0] = TX_FORMAT_VERSION + 1
    assert rejected(wire(body_wire, sigs)) == Reason.UNSUPPORTED_VERSION


def test_wrong_chain():
    tx = sign(body(chain_id="another-network"), [ALICE])
    assert rejected(tx.raw) == Reason.WRONG_CHAIN
    # decoding alone does not know the chain; the full stateless check does
    assert decode_signed(tx.raw).body.chain_id == "another-network"


def test_signature_binds_the_chain_id():
    message_here = signing_message(CHAIN, body().encode())
    assert message_here != signing_message("another-network", body().encode())


def test_missing_signatures():
    body_wire, _ = good_wire()
    assert rejected(wire(body_wire, [])) == Reason.MISSING_SIGNATURE
    no_signers = list(body_wire)
    no_signers[7] = []
    assert rejected(wire(no_signers, [])) == Reason.MISSING_SIGNATURE
    two = sign(body(signers=(ALICE.public_key, BOB.public_key)), [ALICE, BOB])
    assert rejected(wire(two.body.to_wire(), list(two.signatures[:1]))) == Reason.MISSING_SIGNATURE


def test_bad_signatures():
    body_wire, sigs = good_wire()
    assert rejected(wire(body_wire, [bytes(64)])) == Reason.BAD_SIGNATURE
    by_bob = BOB.sign(signing_message(CHAIN, body().encode()))
    assert rejected(wire(body_wire, [by_bob])) == Reason.BAD_SIGNATURE
    assert rejected(wire(body_wire, [sigs[0][:63]])) == Reason.MALFORMED
    two = sign(body(signers=(ALICE.public_key, BOB.public_key)), [ALICE, BOB])
    swapped = [two.signatures[1], two.signatures[0]]
    assert rejected(wire(two.body.to_wire(), swapped)) == Reason.BAD_SIGNATURE


def test_duplicate_signer():
    body_wire, sigs = good_wire()
    body_wire[7] = [ALICE.public_key, ALICE.public_key]
    assert rejected(wire(body_wire, sigs * 2)) == Reason.DUPLICATE_SIGNER


def test_oversized():
    huge = sign(body(args={"memo": "x" * MAX_TX_BYTES}), [ALICE])
    assert rejected(huge.raw) == Reason.TOO_LARGE


def test_sign_needs_every_signers_key():
    with pytest.raises(ValueError):
        sign(body(signers=(ALICE.public_key, BOB.public_key)), [ALICE])


def test_multi_signed_transactions_verify_in_signer_order():
    tx = sign(body(signers=(BOB.public_key, ALICE.public_key)), [ALICE, BOB])
    assert check_stateless(tx.raw, CHAIN).signer_addresses == (BOB.address, ALICE.address)


SIGNED = sign(body(), [ALICE])


@settings(max_examples=300)
@given(st.integers(0, len(SIGNED.raw) * 8 - 1))
def test_flipping_any_bit_invalidates_the_transaction(bit):
    raw = bytearray(SIGNED.raw)
    raw[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(TxRejected):
        check_stateless(bytes(raw), CHAIN)


@settings(max_examples=50)
@given(st.binary(max_size=300))
def test_random_bytes_are_refused_with_a_code_never_a_crash(data):
    try:
        tx = check_stateless(data, CHAIN)
    except TxRejected as exc:
        assert exc.reason in Reason.__members__.values()
    else:
        assert isinstance(tx, SignedTx)  # astronomically unlikely: a valid signature


@pytest.mark.parametrize("count", [1, 2, 15, MAX_SIGNERS])
def test_the_body_bytes_and_id_are_the_same_whatever_the_number_of_signatures(count):
    keys = [KeyPair(bytes([10 + n]) * 32) for n in range(count)]
    tx = sign(body(signers=tuple(k.public_key for k in keys)), keys)
    decoded = check_stateless(tx.raw, CHAIN)
    assert decoded.body_bytes == tx.body.encode() and decoded.tx_id == tx.tx_id
