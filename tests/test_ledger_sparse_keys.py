"""The store's index of sparse namespaces: a read through it returns exactly what LevelDB holds,
whatever was committed, deleted, grown past the bound or reopened.

At 1,000,000 accounts most reads of a transfer ask for keys that do not exist (freeze flags, key
re-bindings); the index answers those without LevelDB, so a wrong answer here would let a
frozen account pay. These tests compare every read with the raw store.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts import participants
from contracts.compliance import WHOLE_ACCOUNT, freeze_key
from ledger import auth
from ledger.state import prefix_of
from ledger.store import EMPTY_POSITION, SPARSE_STATE_PREFIXES, LedgerStore, SparseKeys

ACCOUNT = "kx" + "a" * 39
# Keys under each sparse namespace, and others beside and between them.
ALL_KEYS = [
    b"freeze\x1fa\x1f*", b"freeze\x1fa\x1fEUR", b"freeze\x1fb\x1f*", b"freeze", b"freezer\x1fa",
    b"auth\x1fkey\x1f" + bytes(32), b"auth\x1fkey\x1f" + bytes([1]) * 32, b"auth\x1facct\x1fa",
    b"auth\x1facct\x1fb", b"auth\x1fother", b"part\x1fa", b"bal\x1fEUR\x1fa",
]
KEYS = st.sampled_from(ALL_KEYS)
BLOCKS = st.lists(st.dictionaries(KEYS, st.none() | st.binary(min_size=1, max_size=4), max_size=6), max_size=8)


def test_the_listed_prefixes_are_those_the_key_builders_make():
    assert prefix_of("freeze") in SPARSE_STATE_PREFIXES
    assert freeze_key(ACCOUNT, WHOLE_ACCOUNT).startswith(prefix_of("freeze"))
    assert auth.key_binding_key(bytes(32)).startswith(prefix_of(auth.AUTH_NAMESPACE, "key"))
    assert prefix_of(auth.AUTH_NAMESPACE, "key") in SPARSE_STATE_PREFIXES
    assert auth.account_key_key(ACCOUNT).startswith(prefix_of(auth.AUTH_NAMESPACE, "acct"))
    assert prefix_of(auth.AUTH_NAMESPACE, "acct") in SPARSE_STATE_PREFIXES
    assert participants.key_taken_key(ACCOUNT).startswith(prefix_of("key_taken"))
    assert prefix_of("key_taken") in SPARSE_STATE_PREFIXES


def _assert_reads_match(store: LedgerStore) -> None:
    raw = store.db.prefixed_db(b"s")
    for key in ALL_KEYS:
        assert store.state.get(key) == raw.get(key), key


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(BLOCKS, st.integers(1, 3))
def test_reads_through_the_index_equal_the_stores_after_every_commit_and_reopen(blocks, max_keys):
    with tempfile.TemporaryDirectory() as tmp:
        store = LedgerStore(Path(tmp))
        store.state.sparse = SparseKeys(store.state._db, max_keys=max_keys)  # tiny: namespaces overflow
        try:
            for writes in blocks:
                store.commit(writes, None, {}, EMPTY_POSITION, sync=False)
                _assert_reads_match(store)
        finally:
            store.close()
        reopened = LedgerStore(Path(tmp))
        try:
            _assert_reads_match(reopened)
        finally:
            reopened.close()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[LedgerStore]:
    opened = LedgerStore(tmp_path)
    try:
        yield opened
    finally:
        opened.close()


def test_a_namespace_too_big_to_index_is_read_from_leveldb(store):
    store.commit({b"freeze\x1fa\x1f*": b"1", b"freeze\x1fb\x1f*": b"1"}, None, {}, EMPTY_POSITION)
    small = SparseKeys(store.state._db, max_keys=1)
    assert prefix_of("freeze") not in small.indexed_prefixes()
    assert not small.known_absent(b"freeze\x1fc\x1f*")  # not known: LevelDB is asked
    assert prefix_of(auth.AUTH_NAMESPACE, "key") in small.indexed_prefixes()


def test_a_failed_commit_never_hides_a_key(store):
    store.commit({b"freeze\x1fa\x1f*": b"1"}, None, {}, EMPTY_POSITION)
    store.db.close()  # the next write batch fails
    with pytest.raises(RuntimeError):
        store.commit({b"freeze\x1fb\x1f*": b"1", b"freeze\x1fa\x1f*": None}, None, {}, EMPTY_POSITION)
    # Written keys were added before the batch; the deletion was not applied to the index.
    assert not store.state.sparse.known_absent(b"freeze\x1fb\x1f*")
    assert not store.state.sparse.known_absent(b"freeze\x1fa\x1f*")
