"""A network may start with more participants than one call may emit events or one array may hold.

Genesis admits them with one summary event; each participant is still listed in that event's
history, so its history starts at block 0 like everyone else's.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from contracts import participants
from contracts.base import MAX_EVENTS_PER_TX, BlockContext, Context
from contracts.registry import default_registry
from ledger import codec
from ledger.executor import Executor
from ledger.genesis import Genesis
from ledger.keys import address_of
from ledger.sandbox import SANDBOX_GENESIS_TIME_MS
from ledger.store import HISTORY_SYSTEM, LedgerStore

PARTICIPANTS = 12_000


def test_a_genesis_of_12000_participants_writes_block_0_and_each_history_starts_there(tmp_path: Path) -> None:
    assert PARTICIPANTS > MAX_EVENTS_PER_TX and PARTICIPANTS > codec.MAX_CONTAINER_ITEMS
    addresses = [address_of(hashlib.sha256(i.to_bytes(4, "big")).digest()) for i in range(PARTICIPANTS)]
    operator = address_of(hashlib.sha256(b"operator").digest())
    app_state = {"operators": [operator],
                 "participants": [{"address": a, "roles": ["investor"]} for a in addresses]}
    genesis = Genesis("big-genesis", SANDBOX_GENESIS_TIME_MS, (), app_state)
    store = LedgerStore(tmp_path / "data")
    try:
        Executor(store, default_registry(), genesis, sync=False).init_genesis()
        block = store.block(0)  # decodes: a handful of system events, not one per participant
        assert block is not None
        kinds = [e.kind for e in block.system_events]
        assert kinds.count("participants_admitted") == 1
        summary = kinds.index("participants_admitted")
        assert block.system_events[summary].attrs["count"] == PARTICIPANTS
        view = Context(store.state, BlockContext("big-genesis", 0, SANDBOX_GENESIS_TIME_MS), None, ())  # type: ignore[arg-type]
        for address in (addresses[0], addresses[PARTICIPANTS // 2], addresses[-1]):
            found = participants.get(view, address)
            assert found is not None and found.active and found.roles == ("investor",)
            entries = store.history(address)
            assert [(e.height, e.kind, e.index) for e in entries] == [(0, HISTORY_SYSTEM, summary)]
        # the same genesis again is recognised as this network's (its hash covers every participant)
        Executor(store, default_registry(), genesis, sync=False).init_genesis()
    finally:
        store.close()


def test_the_genesis_hash_is_the_canonical_encoding_hash_when_it_fits_one_array() -> None:
    small = Genesis("small", 1, (), {"participants": [{"address": "x", "roles": ["investor"]}] * 3})
    assert codec.encode_document(small.to_json()) == codec.encode(small.to_json())
