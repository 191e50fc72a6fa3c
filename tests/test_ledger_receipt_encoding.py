"""A receipt's bytes are the canonical encoding of its wire form, whichever path builds them."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import codec
from ledger.block import Event, Receipt
from ledger.reasons import Reason

LEAVES = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.text(max_size=8), st.binary(max_size=8))
VALUES = st.recursive(LEAVES, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner,
                                                                                        max_size=3), max_leaves=6)
EVENTS = st.builds(Event, st.text(min_size=1, max_size=12), st.dictionaries(st.text(max_size=8), VALUES, max_size=5))


@settings(max_examples=100, deadline=None)
@given(st.binary(min_size=32, max_size=32), st.sampled_from(list(Reason)), st.text(max_size=20),
       st.lists(EVENTS, max_size=4))
def test_receipt_bytes_are_the_codec_encoding_of_its_wire_form(tx_id, reason, detail, events) -> None:
    receipt = Receipt(tx_id, reason, detail, tuple(events))
    try:
        expected = codec.encode(receipt.to_wire())
    except codec.CodecError as exc:
        try:
            _ = receipt.encoded
        except codec.CodecError as same:
            assert type(same) is type(exc)
            return
        raise AssertionError("the receipt encoded a value the codec refuses") from exc
    assert receipt.encoded == expected
    assert Receipt.from_wire(codec.decode(receipt.encoded, max_bytes=1 << 20)) == receipt
