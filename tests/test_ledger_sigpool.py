"""Signature checks in worker processes give the verdicts of in-process checks, whatever happens
to the workers: forged signatures, a pool that cannot start, a worker that dies mid-batch."""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts.registry import default_registry
from ledger import codec
from ledger.executor import PARALLEL_VERIFY_MIN_TXS, Executor, verify_stream
from ledger.reasons import Reason
from ledger.sandbox import SANDBOX_CURRENCY as EUR
from ledger.sandbox import make_sandbox
from ledger.sigpool import CHUNK_TXS, WINDOW_CHUNKS, SignaturePool
from ledger.store import LedgerStore
from ledger.tx import SignedTx, decode_signed

SANDBOX = make_sandbox(6, label="sigpool")
H = SANDBOX.holders
TXS = [SANDBOX.call(H[n % 6], "cash", "transfer", {"currency": EUR, "to": H[(n + 1) % 6].address, "amount": 1},
                    nonce=n) for n in range(3 * CHUNK_TXS + 5)]  # chunks of every size the pool sends


def forge(tx: SignedTx, how: int) -> SignedTx:
    """A copy whose signature does not verify: zeroed, another message's, or one bit flipped."""
    if how == 0:
        signature = bytes(64)
    elif how == 1:
        signature = H[0].sign(b"another message")
    else:
        flipped = bytearray(tx.signatures[0])
        flipped[how % 64] ^= 1 << (how % 8)
        signature = bytes(flipped)
    return decode_signed(codec.encode([tx.body.to_wire(), [signature]]))


@pytest.fixture(scope="module")
def pool() -> Iterator[SignaturePool]:
    with SignaturePool(workers=2) as started:
        assert started.running
        yield started


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.dictionaries(st.integers(0, len(TXS) - 1), st.integers(0, 600), max_size=12))
def test_workers_give_the_in_process_verdicts(pool: SignaturePool, forged: dict[int, int]) -> None:
    txs = [forge(tx, forged[i]) if i in forged else tx for i, tx in enumerate(TXS)]
    assert list(pool.verify_stream(txs)) == [tx.verify_signatures() for tx in txs]
    assert [i for i, tx in enumerate(txs) if not tx.verify_signatures()] == sorted(forged)


def test_a_caller_that_stops_early_leaves_no_answer_behind(pool: SignaturePool) -> None:
    stream = pool.verify_stream(TXS)
    assert next(stream) is True
    stream.close()  # chunks still in flight: their answers must not reach the next batch
    txs = [forge(tx, 0) for tx in TXS]
    assert pool.running and not any(pool.verify_stream(txs))


def test_a_pool_that_cannot_start_leaves_the_checks_in_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "executable", "/nonexistent/python")
    broken = SignaturePool(workers=1)
    assert broken.start() is False and not broken.running
    txs = [forge(tx, 0) if i == 40 else tx for i, tx in enumerate(TXS)]
    assert list(verify_stream(txs, broken)) == [i != 40 for i in range(len(txs))]
    assert list(broken.verify_stream(txs)) == [i != 40 for i in range(len(txs))]


def test_a_worker_that_dies_mid_batch_is_replaced_by_in_process_checks() -> None:
    batch = TXS * 3  # more chunks than the window sends ahead: some go out after the death
    assert len(batch) > (WINDOW_CHUNKS * 2 + 1) * CHUNK_TXS
    with SignaturePool(workers=2) as dying:
        txs = [forge(tx, 1) if i % 9 == 0 else tx for i, tx in enumerate(batch)]
        stream = dying.verify_stream(txs)
        verdicts = [next(stream)]
        dying._procs[1].kill()
        dying._procs[1].wait(timeout=10)
        verdicts.extend(stream)
        assert verdicts == [i % 9 != 0 for i in range(len(txs))]
        assert not dying.running  # closed: the next batches are checked in process


def test_the_executor_with_a_pool_drops_exactly_the_forged_transaction(pool: SignaturePool) -> None:
    mints = [SANDBOX.call(SANDBOX.agent, "cash", "mint", {"currency": EUR, "to": holder.address, "amount": 10**6,
                                                           "deposit_ref": "d"}, nonce=10_000 + i)
             for i, holder in enumerate(H)]
    batch = list(TXS[:PARALLEL_VERIFY_MIN_TXS + 3])
    batch[50] = forge(batch[50], 7)
    results = []
    for signature_pool in (pool, None):
        with tempfile.TemporaryDirectory(prefix="keiretsu-test-") as data_dir:
            store = LedgerStore(data_dir)
            try:
                executor = Executor(store, default_registry(), SANDBOX.genesis, sync=False,
                                    signature_pool=signature_pool)
                executor.init_genesis()
                executor.apply(SANDBOX.batch(mints), 1, 1)
                applied = executor.apply(SANDBOX.batch(batch), 2, 1)
                assert applied is not None
                results.append((applied.block.hash(), [(d.tx_id, d.reason) for d in applied.dropped]))
            finally:
                store.close()
    assert results[0] == results[1]
    assert results[0][1] == [(batch[50].tx_id, Reason.BAD_SIGNATURE)]
