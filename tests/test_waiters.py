"""The node's waiters (keiretsu_node/waiters.py): a batch request waits on one future that
completes with the last of its transactions, and nothing stays registered after it stops."""

from __future__ import annotations

import asyncio

from keiretsu_node.waiters import BatchWait, Waiters

A, B, C = b"a" * 32, b"b" * 32, b"c" * 32


def test_a_batch_completes_only_when_every_transaction_is_resolved() -> None:
    async def scenario() -> None:
        waiters = Waiters(max_txs=10)
        batch = BatchWait(asyncio.get_running_loop())
        for tx_id in (A, B):
            waiters.add(tx_id, batch)
        batch.expect(2)
        waiters.resolve(A, {"status": "committed"})
        assert not batch.done.done()
        waiters.resolve(C, {"status": "committed"})  # nobody waits for it
        waiters.resolve(B, {"status": "dropped"})
        await asyncio.wait_for(batch.done, 1)
        assert batch.statuses == {A: {"status": "committed"}, B: {"status": "dropped"}}
        assert len(waiters) == 0

    asyncio.run(scenario())


def test_two_requests_waiting_on_one_transaction_both_hear_of_it() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        waiters = Waiters(max_txs=10)
        single, batch = BatchWait(loop), BatchWait(loop)
        waiters.add(A, single)
        waiters.add(A, batch)
        waiters.add(B, batch)
        single.expect(1)
        batch.expect(2)
        waiters.resolve(A, {"status": "committed"})
        assert single.statuses == {A: {"status": "committed"}} and single.done.done()
        assert batch.statuses == {A: {"status": "committed"}} and not batch.done.done()

    asyncio.run(scenario())


def test_a_waiter_that_gives_up_is_forgotten_and_the_bound_counts_transactions() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        waiters = Waiters(max_txs=2)
        batch = BatchWait(loop)
        waiters.add(A, batch)
        waiters.add(B, batch)
        batch.expect(2)
        assert waiters.full() and A in waiters
        waiters.discard(A, batch)
        waiters.discard(B, batch)
        assert len(waiters) == 0 and not waiters.full()
        waiters.resolve(A, {"status": "committed"})  # too late: nobody is told
        assert batch.statuses == {} and not batch.done.done()

    asyncio.run(scenario())


def test_nothing_to_wait_for_is_done_at_once_and_stopping_cancels_the_rest() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        empty = BatchWait(loop)
        empty.expect(0)
        assert empty.done.done()
        waiters = Waiters(max_txs=10)
        batch = BatchWait(loop)
        waiters.add(A, batch)
        batch.expect(1)
        waiters.cancel_all()
        assert batch.done.cancelled() and len(waiters) == 0

    asyncio.run(scenario())

