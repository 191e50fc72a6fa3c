"""Clients waiting for their transactions' outcomes, by transaction id, bounded.

Part of keiretsu_node/. The node resolves a transaction's waiters when a block commits or drops
it. A batch request of N transactions waits on ONE future, completed when the last of its N is
resolved: N futures under asyncio.wait cost a done-callback, a scheduled loop callback and a
removal each, per transaction, on the event loop that also runs Raft and the HTTP API.
"""

from __future__ import annotations

import asyncio
from collections.abc import KeysView
from typing import Any

Status = dict[str, Any]


class BatchWait:
    """One request's wait for several transactions: `done` completes once all are resolved."""

    __slots__ = ("done", "remaining", "statuses")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.done: asyncio.Future[None] = loop.create_future()
        self.remaining = 0
        self.statuses: dict[bytes, Status] = {}

    def expect(self, count: int) -> None:
        """Set how many transactions this waits for (after registering them, before awaiting)."""
        self.remaining = count
        if count == 0 and not self.done.done():
            self.done.set_result(None)

    def resolve(self, tx_id: bytes, status: Status) -> None:
        if tx_id in self.statuses:
            return
        self.statuses[tx_id] = status
        self.remaining -= 1
        if self.remaining <= 0 and not self.done.done():
            self.done.set_result(None)


class Waiters:
    """Who waits for which transaction. `len` counts transactions, which MAX_WAITERS bounds."""

    def __init__(self, max_txs: int) -> None:
        self.max_txs = max_txs
        self._by_tx: dict[bytes, list[BatchWait]] = {}

    def __len__(self) -> int:
        return len(self._by_tx)

    def __contains__(self, tx_id: bytes) -> bool:
        return tx_id in self._by_tx

    def ids(self) -> KeysView[bytes]:
        """The ids waited for, as a live view (membership tests at C speed)."""
        return self._by_tx.keys()

    def full(self) -> bool:
        return len(self._by_tx) >= self.max_txs

    def add(self, tx_id: bytes, waiter: BatchWait) -> None:
        self._by_tx.setdefault(tx_id, []).append(waiter)

    def discard(self, tx_id: bytes, waiter: BatchWait) -> None:
        """Forget a waiter that stopped waiting (timed out or cancelled); no-op if resolved."""
        waiting = self._by_tx.get(tx_id)
        if waiting and waiter in waiting:
            waiting.remove(waiter)
            if not waiting:
                del self._by_tx[tx_id]

    def resolve(self, tx_id: bytes, status: Status) -> None:
        for waiter in self._by_tx.pop(tx_id, ()):
            waiter.resolve(tx_id, status)

    def cancel_all(self) -> None:
        for waiting in self._by_tx.values():
            for waiter in waiting:
                if not waiter.done.done():
                    waiter.done.cancel()
        self._by_tx.clear()
