"""A follower far behind gets the ledger as a snapshot: what LedgerApp streams, LedgerApp installs."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import msgpack
import pytest

from contracts.registry import default_registry
from keiretsu_node import ledger_app
from keiretsu_node.ledger_app import LEDGER_DIR, LedgerApp, SnapshotError, recover_dirs
from ledger.block import Block, BlockHeader, results_root
from ledger.executor import Executor
from ledger.merkle import merkle_root
from ledger.sandbox import make_sandbox
from ledger.store import AppliedPosition, LedgerStore, height_key

MIB = 1024 * 1024


def _node_ledger(data_dir: Path, genesis) -> tuple[LedgerApp, Executor]:  # type: ignore[no-untyped-def]
    data_dir.mkdir(parents=True, exist_ok=True)
    executor = Executor(LedgerStore(data_dir / LEDGER_DIR), default_registry(), genesis, sync=False)
    executor.init_genesis()
    replaced: list[LedgerStore] = []
    app = LedgerApp(executor, data_dir, lambda *_: None, replaced.append)
    return app, executor


def test_a_snapshot_installs_the_whole_ledger_and_the_follower_goes_on_from_it(tmp_path: Path) -> None:
    box = make_sandbox(holders=4)
    leader, leader_exec = _node_ledger(tmp_path / "leader", box.genesis)
    follower, follower_exec = _node_ledger(tmp_path / "follower", box.genesis)
    a, b = box.holders[0], box.holders[1]
    mint = box.call(box.agent, "cash", "mint", {"currency": "MXN", "to": a.address, "amount": 10_000,
                                                "deposit_ref": "d"}, nonce=1)
    leader_exec.apply(box.batch([mint]), 1, 1)
    for i in range(2, 40):  # many small blocks the follower never saw
        pay = box.call(a, "cash", "transfer", {"currency": "MXN", "to": b.address, "amount": i}, nonce=i)
        leader_exec.apply(box.batch([pay], time_ms=box.genesis.genesis_time_ms + i), i, 1)
    index, term, chunks = leader.snapshot()
    assert (index, term) == (39, 1)
    follower.install_snapshot(index, term, iter(list(chunks)))
    store = follower_exec.store
    assert store.position == leader_exec.store.position
    store.verify_blocks()
    for h in range(store.position.height + 1):
        assert store.block(h).hash() == leader_exec.store.block(h).hash()
    pay = box.call(a, "cash", "transfer", {"currency": "MXN", "to": b.address, "amount": 1}, nonce=99)
    batch = box.batch([pay], time_ms=box.genesis.genesis_time_ms + 100)
    assert follower_exec.apply(batch, 40, 1).block.hash() == leader_exec.apply(batch, 40, 1).block.hash()
    assert not (tmp_path / "follower" / "ledger.old").exists()
    assert not (tmp_path / "follower" / "ledger.incoming").exists()


def test_a_block_larger_than_a_snapshot_document_still_travels(tmp_path: Path) -> None:
    """A block with its receipts may be far larger than a batch (a transaction may emit 10,000
    events); a follower that needs a snapshot must be able to install every block the ledger
    holds, or it can never catch up."""
    box = make_sandbox(holders=1)
    leader, leader_exec = _node_ledger(tmp_path / "leader", box.genesis)
    follower, follower_exec = _node_ledger(tmp_path / "follower", box.genesis)
    store = leader_exec.store
    before = store.position
    raws = tuple(bytes([i]) * MIB for i in range(12))  # stands for 12 MiB of transactions and receipts
    time_ms = box.genesis.genesis_time_ms + 1
    header = BlockHeader(box.chain_id, 1, before.block_hash, time_ms, merkle_root(list(raws)),
                         results_root((), ()), before.state_hash, 1, 1)
    big = Block(header, raws, (), ())
    store.commit({}, big, {}, AppliedPosition(1, 1, 1, big.hash(), before.state_hash, time_ms), sync=False)
    index, term, chunks = leader.snapshot()
    follower.install_snapshot(index, term, chunks)
    installed = follower_exec.store
    installed.verify_blocks()
    assert installed.position == store.position
    assert installed.block(1).txs == raws


def test_a_crash_between_the_two_renames_of_an_install_is_finished_at_start(tmp_path: Path) -> None:
    box = make_sandbox(holders=1)
    _, executor = _node_ledger(tmp_path / "src", box.genesis)
    position = executor.store.position
    executor.store.close()
    data = tmp_path / "node"
    data.mkdir()
    (tmp_path / "src" / LEDGER_DIR).rename(data / "ledger.incoming")  # the new store, complete
    recover_dirs(data)  # 'ledger' was already renamed away when the crash came
    reopened = LedgerStore(data / LEDGER_DIR)
    assert reopened.position == position
    reopened.close()


def test_a_snapshot_re_split_in_transit_installs_and_a_truncated_one_is_refused(tmp_path: Path) -> None:
    """The transfer re-splits the app's stream at its own chunk size (snapshot_transfer.py):
    a chunk may end inside a document. Installing must not depend on where the cuts fall."""
    box = make_sandbox(holders=2)
    leader, leader_exec = _node_ledger(tmp_path / "leader", box.genesis)
    follower, follower_exec = _node_ledger(tmp_path / "follower", box.genesis)
    index, term, chunks = leader.snapshot()
    stream = b"".join(chunks)
    pieces = [stream[i:i + 97] for i in range(0, len(stream), 97)]  # cuts inside documents
    assert len(pieces) > 2
    with pytest.raises(SnapshotError):
        follower.install_snapshot(index, term, iter(pieces[:-1]))
    follower.install_snapshot(index, term, iter(pieces))
    assert follower_exec.store.position == leader_exec.store.position


def _leader_with_blocks(tmp_path: Path, box, blocks: int) -> tuple[LedgerApp, Executor]:  # type: ignore[no-untyped-def]
    leader, leader_exec = _node_ledger(tmp_path / "leader", box.genesis)
    a, b = box.holders[0], box.holders[1]
    leader_exec.apply(box.batch([box.call(box.agent, "cash", "mint", {"currency": "MXN", "to": a.address,
                                                                      "amount": 100, "deposit_ref": "d"},
                                          nonce=1)]), 1, 1)
    for i in range(2, blocks + 1):
        pay = box.call(a, "cash", "transfer", {"currency": "MXN", "to": b.address, "amount": 1}, nonce=i)
        leader_exec.apply(box.batch([pay], time_ms=box.genesis.genesis_time_ms + i), i, 1)
    return leader, leader_exec


@pytest.mark.parametrize("bad", [
    [[b"sfreeze\x1fzzz", 5]],  # an integer value: once installed as five zero bytes
    [[64 * MIB, b""]],  # a nine-byte document once allocated a 64 MiB key
    [[b"s" + b"k" * 5000, b"v"]],  # a key no store of ours holds
    [[b"sk", b"v", b"extra"]],
    [b"not a pair"],
])
def test_a_snapshot_record_that_is_not_a_pair_of_byte_strings_is_refused_before_anything_is_allocated(
        tmp_path: Path, bad: list) -> None:  # type: ignore[type-arg]
    box = make_sandbox(holders=2)
    leader, leader_exec = _node_ledger(tmp_path / "leader", box.genesis)
    follower, follower_exec = _node_ledger(tmp_path / "follower", box.genesis)
    index, term, chunks = leader.snapshot()
    with pytest.raises(SnapshotError):
        follower.install_snapshot(index, term, iter([*chunks, msgpack.packb(bad, use_bin_type=True)]))
    assert follower_exec.store.position == leader_exec.store.position  # unchanged: genesis


def test_a_snapshot_document_past_its_pair_bound_is_refused_from_its_header(tmp_path: Path) -> None:
    """Decoded whole, one open document grew in memory without bound (msgpack moves each finished
    pair out of the buffer max_buffer_size bounds): now its header alone is refused."""
    box = make_sandbox(holders=2)
    leader, _ = _node_ledger(tmp_path / "leader", box.genesis)
    follower, _ = _node_ledger(tmp_path / "follower", box.genesis)
    index, term, chunks = leader.snapshot()
    header = b"\xdd" + (ledger_app.MAX_PAIRS_PER_DOCUMENT + 1).to_bytes(4, "big")  # array 32
    with pytest.raises(SnapshotError, match="pairs"):
        follower.install_snapshot(index, term, iter([*chunks, header + msgpack.packb([b"k", b"v"])]))


def test_a_snapshot_without_its_head_block_or_of_another_chain_is_refused_before_the_swap(tmp_path: Path) -> None:
    box = make_sandbox(holders=2)
    leader, leader_exec = _leader_with_blocks(tmp_path, box, 5)
    follower, follower_exec = _node_ledger(tmp_path / "follower", box.genesis)
    index, term, chunks = leader.snapshot()
    head = height_key(leader_exec.store.position.height)
    docs = [[p for p in msgpack.unpackb(d, raw=True) if p[0] != head] for d in chunks]
    with pytest.raises(SnapshotError, match="missing or does not match"):
        follower.install_snapshot(index, term, iter([msgpack.packb(d, use_bin_type=True) for d in docs]))
    assert follower_exec.store.position.height == 0  # still the old ledger
    other = make_sandbox(holders=2, chain_id="another-chain")
    stranger, _ = _node_ledger(tmp_path / "stranger", other.genesis)
    with pytest.raises(SnapshotError, match="another chain"):
        stranger.install_snapshot(index, term, iter(list(leader.snapshot()[2])))


def test_a_snapshot_pair_of_nested_arrays_is_refused_before_it_is_built(tmp_path: Path) -> None:
    """One pair whose value is a million empty arrays in a thousand arrays (~1 MiB on the wire)
    was built whole (~70 MiB of Python objects) before its type was checked: no array from a
    peer is built now."""
    box = make_sandbox(holders=2)
    leader, _ = _node_ledger(tmp_path / "leader", box.genesis)
    follower, _ = _node_ledger(tmp_path / "follower", box.genesis)
    index, term, chunks = leader.snapshot()
    thousand = (1000).to_bytes(2, "big")
    nested = b"\xdc" + thousand + (b"\xdc" + thousand + b"\x90" * 1000) * 1000  # array 16 of arrays 16
    document = b"\x91" + b"\x92" + msgpack.packb(b"sk") + nested
    tracemalloc.start()
    try:
        with pytest.raises(SnapshotError):
            follower.install_snapshot(index, term, iter([*chunks, document]))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 * MIB
