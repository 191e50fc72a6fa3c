"""The kept packers of the Raft log, the Raft messages and the p2p frames write exactly the bytes
msgpack.packb writes, for small objects (the kept packer) and large ones (a fresh packer), in
any order, so nothing on disk or on the wire depends on which packer ran."""

from __future__ import annotations

from typing import Any

import msgpack
from hypothesis import given, settings
from hypothesis import strategies as st

from consensus.messages import PACKER_KEEPS_BYTES, packb
from p2p.frame import SHARED_PACKER_MAX_PAYLOAD, Frame, encode_frame

# Payload sizes on both sides of each packer's bound, and small ones between them.
SIZES = st.sampled_from([0, 1, 255, 256, 65_535, 65_536, PACKER_KEEPS_BYTES - 64, PACKER_KEEPS_BYTES,
                         PACKER_KEEPS_BYTES + 1, SHARED_PACKER_MAX_PAYLOAD + 1, 600_000])
LEAVES = st.one_of(st.integers(-(2**63), 2**64 - 1), st.text(max_size=20), st.binary(max_size=40),
                   st.none(), st.booleans())


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(SIZES, st.lists(LEAVES, max_size=5)), min_size=1, max_size=6))
def test_kept_packers_write_what_msgpack_packb_writes(objects: list[tuple[int, list[Any]]]) -> None:
    for size, leaves in objects:
        record = [7, b"d" * size, leaves]
        assert packb(record) == msgpack.packb(record)
        frame = Frame("raft", b"p" * size)
        body = encode_frame(frame)[4:]
        assert body == msgpack.packb(["raft", frame.payload], use_bin_type=True)
