"""The fast paths of the codec and of decode_signed give exactly what the general paths give.

decode_signed first tries a decoder for the common form (flat arguments) that proves canonical
form without the codec's walk of the value; anything else falls back to the general decoder.
These properties feed both random and mutated bytes and require the same transaction, or the
same refusal with the same reason, from each.
"""

from __future__ import annotations

import msgpack
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from ledger import codec, tx
from ledger.block import Event, Receipt
from ledger.reasons import Reason, TxRejected
from ledger.sandbox import seeded_key
from ledger.store import HistoryEntry, history_key, history_keys

KEYS = [seeded_key("fast-path", i) for i in range(3)]

leaves = st.one_of(
    st.none(), st.booleans(), st.integers(codec.MIN_INT, codec.MAX_INT), st.integers(-(2**70), 2**70),
    st.text(max_size=12), st.binary(max_size=12),
)
odd_leaves = st.one_of(leaves, st.floats(allow_nan=False), st.lists(leaves, max_size=3),
                       st.dictionaries(st.text(max_size=4), leaves, max_size=3))
names = st.one_of(st.sampled_from(["keiretsu-sandbox", "cash", "transfer", "x"]), st.text(max_size=70))
arg_maps = st.dictionaries(st.one_of(st.text(max_size=10), st.binary(max_size=3)), odd_leaves, max_size=5)


@st.composite
def wire_transactions(draw: st.DrawFn) -> list:
    """A [body, signatures] array, usually well formed, often subtly not."""
    signer_count = draw(st.integers(0, 3))
    signers = [KEYS[i % len(KEYS)].public_key for i in range(signer_count)]
    if draw(st.booleans()):
        signers = draw(st.lists(st.one_of(st.binary(min_size=31, max_size=33), st.sampled_from(signers or [b""])),
                                max_size=3))
    signatures = [bytes(64)] * len(signers)
    if draw(st.integers(0, 4)) == 0:
        signatures = draw(st.lists(st.binary(min_size=63, max_size=65), max_size=3))
    version = draw(st.sampled_from([1, 1, 1, 2, True, 1.0]))
    body = [version, draw(names), draw(names), draw(names), draw(arg_maps),
            draw(st.one_of(st.integers(0, 2**64 - 1), st.integers(-5, 2**65), st.booleans())),
            draw(st.integers(-5, 2**65)), signers]
    if draw(st.integers(0, 9)) == 0:
        body = draw(st.lists(odd_leaves, max_size=9))
    return [body, signatures]


def _packed(wire: list, use_bin_type: bool) -> bytes:
    """msgpack as a client might send it: maps in insertion order, so not always canonical."""
    try:
        return msgpack.packb(wire, use_bin_type=use_bin_type)
    except OverflowError:  # an integer no msgpack encoding holds: nothing to decode
        assume(False)
        raise


def _outcome(decode, raw: bytes) -> tuple:
    try:
        signed = decode(raw)
    except TxRejected as exc:
        return ("rejected", exc.reason, exc.detail)
    return ("ok", signed.body, signed.signatures, signed.raw, signed.body_bytes, signed.tx_id)


def _check_same(raw: bytes) -> None:
    reference = _outcome(tx._decode_general, raw)
    fast = tx._decode_flat(raw)  # never raises: None means "not the common form"
    if fast is not None:
        assert reference == ("ok", fast.body, fast.signatures, fast.raw, fast.body_bytes, fast.tx_id)
    assert _outcome(tx.decode_signed, raw) == reference


@settings(max_examples=400)
@given(wire_transactions(), st.booleans())
def test_fast_decoder_agrees_with_the_general_one_on_random_transactions(wire, use_bin_type):
    _check_same(_packed(wire, use_bin_type))


@settings(max_examples=300)
@given(st.integers(0, 2), st.dictionaries(st.sampled_from(["amount", "currency", "to", "memo"]), leaves, max_size=4),
       st.data())
def test_fast_decoder_agrees_on_mutated_signed_transactions(signer, args, data):
    body = tx.TxBody("keiretsu-sandbox", "cash", "transfer", args, 7, 10**12, (KEYS[signer].public_key,))
    try:
        raw = tx.sign(body, [KEYS[signer]]).raw
    except codec.CodecError:
        return  # an argument the codec refuses to encode (an integer beyond 64 bits)
    _check_same(raw)  # the genuine bytes take the fast path
    assert tx._decode_flat(raw) is not None
    position = data.draw(st.integers(0, len(raw) - 1))
    mutation = data.draw(st.sampled_from(["flip", "cut", "append", "insert"]))
    if mutation == "flip":
        mutated = raw[:position] + bytes([raw[position] ^ data.draw(st.integers(1, 255))]) + raw[position + 1:]
    elif mutation == "cut":
        mutated = raw[:position]
    elif mutation == "append":
        mutated = raw + data.draw(st.binary(min_size=1, max_size=3))
    else:
        mutated = raw[:position] + data.draw(st.binary(min_size=1, max_size=3)) + raw[position:]
    _check_same(mutated)


def test_nested_arguments_take_the_general_path_and_decode_the_same():
    body = tx.TxBody("keiretsu-sandbox", "settlement", "batch", {"legs": [{"a": 1}, {"b": [2]}]}, 1, 10**12,
                     (KEYS[0].public_key,))
    raw = tx.sign(body, [KEYS[0]]).raw
    assert tx._decode_flat(raw) is None
    assert tx.decode_signed(raw).body == body


def test_unsorted_or_float_arguments_are_refused_as_before():
    good = tx.sign(tx.TxBody("c", "cash", "transfer", {"a": 1, "b": 2}, 1, 1, (KEYS[0].public_key,)), [KEYS[0]])
    unsorted = good.raw.replace(b"\xa1a\x01\xa1b\x02", b"\xa1b\x02\xa1a\x01")
    floated = good.raw.replace(b"\xa1a\x01", b"\xa1a\xca\x3f\x80\x00\x00")
    for raw, reason in ((unsorted, Reason.NON_CANONICAL), (floated, Reason.MALFORMED)):
        assert tx._decode_flat(raw) is None
        try:
            tx.decode_signed(raw)
        except TxRejected as exc:
            assert exc.reason == reason
        else:
            raise AssertionError("accepted a non-canonical transaction")


values = st.recursive(
    leaves, lambda inner: st.one_of(st.lists(inner, max_size=5), st.tuples(inner, inner),
                                    st.dictionaries(st.text(max_size=6), inner, max_size=5)),
    max_leaves=30,
)


def _encoded_or_error(encode, value) -> bytes | str:
    try:
        return encode(value)
    except codec.CodecError as exc:
        return f"error: {exc}"


@settings(max_examples=300)
@given(values)
def test_encode_equals_packing_the_sorted_copy(value):
    try:
        expected: bytes | str = msgpack.packb(codec._canonical(value, 0), use_bin_type=True)
    except (codec.CodecError, OverflowError):
        expected = "error"
    got = _encoded_or_error(codec.encode, value)
    assert got == expected or (expected == "error" and isinstance(got, str))


@settings(max_examples=200)
@given(st.lists(st.one_of(leaves, st.floats(), st.lists(leaves, max_size=2)), max_size=4))
def test_encode_leaves_equals_encode(items):
    assert _encoded_or_error(codec.encode_leaves, items) == _encoded_or_error(codec.encode, items)


@settings(max_examples=200)
@given(st.binary(min_size=32, max_size=32), st.sampled_from(list(Reason)), st.text(max_size=20),
       st.lists(st.tuples(st.text(min_size=1, max_size=10), st.dictionaries(st.text(max_size=6), leaves, max_size=5)),
                max_size=3))
def test_receipt_bytes_equal_the_general_encoding(tx_id, reason, detail, events):
    receipt = Receipt(tx_id, reason, detail, tuple(Event(kind, attrs) for kind, attrs in events))
    assert _encoded_or_error(lambda r: r.encoded, receipt) == _encoded_or_error(codec.encode, receipt.to_wire())


@settings(max_examples=100)
@given(st.lists(st.text(min_size=1, max_size=20), max_size=4), st.integers(0, 2**63), st.sampled_from([0, 1]),
       st.integers(0, 2**31))
def test_history_keys_equal_history_key_per_subject(subjects, height, kind, index):
    entry = HistoryEntry(height, kind, index)
    assert history_keys(subjects, height, kind, index) == [history_key(s, entry) for s in subjects]
