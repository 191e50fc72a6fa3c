"""The mempool's housekeeping (expire, expire_unsent, requeue_stale) skips its scan while nothing
can be due; whatever the history, it drops and requeues exactly what a full scan would, and the
pending byte count the leader's cut reads on every arrival is the sum over the pending entries."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from keiretsu_node.mempool import Mempool

REQUEUE_AFTER_MS = 50


def _tx(n: int, expires_at_ms: int) -> Any:
    tx_id = n.to_bytes(32, "big")
    raw = b"raw" + tx_id + b"x" * _padding(tx_id)  # sizes differ, so the byte count is checked
    return SimpleNamespace(tx_id=tx_id, raw=raw, body=SimpleNamespace(expires_at_ms=expires_at_ms, signers=(b"k",)))


def _padding(tx_id: bytes) -> int:
    return int.from_bytes(tx_id, "big") % 7


def _size(tx_id: bytes) -> int:
    return len(b"raw") + len(tx_id) + _padding(tx_id)


class Model:
    """The pool's rules as plain scans: id -> [expires_at_ms, handed_off_ms or None, ever handed off]."""

    def __init__(self) -> None:
        self.entries: dict[bytes, list[Any]] = {}
        self.pending: dict[bytes, None] = {}

    def add(self, tx: Any) -> None:
        if tx.tx_id not in self.entries:
            self.entries[tx.tx_id] = [tx.body.expires_at_ms, None, False]
            self.pending[tx.tx_id] = None

    def take(self, now_ms: int, max_txs: int) -> list[bytes]:
        out = list(self.pending)[:max_txs]
        for tx_id in out:
            del self.pending[tx_id]
            self.entries[tx_id][1] = now_ms
            self.entries[tx_id][2] = True
        return out

    def requeue_stale(self, now_ms: int) -> int:
        count = 0
        for tx_id, entry in self.entries.items():
            if entry[1] is not None and now_ms - entry[1] >= REQUEUE_AFTER_MS:
                entry[1] = None
                self.pending[tx_id] = None
                count += 1
        return count

    def expire(self, now_ms: int) -> list[bytes]:
        gone = [tx_id for tx_id, entry in self.entries.items() if entry[0] < now_ms]
        self.remove(gone)
        return gone

    def expire_unsent(self, now_ms: int) -> list[bytes]:
        gone = [tx_id for tx_id, entry in self.entries.items() if entry[0] < now_ms and not entry[2]]
        self.remove(gone)
        return gone

    def remove(self, tx_ids: list[bytes]) -> None:
        for tx_id in tx_ids:
            self.entries.pop(tx_id, None)
            self.pending.pop(tx_id, None)


step = st.one_of(
    st.tuples(st.just("add"), st.integers(0, 40), st.integers(0, 400)),
    st.tuples(st.just("take"), st.integers(0, 30), st.integers(1, 5)),
    st.tuples(st.just("take"), st.just(0), st.integers(1, 5)),
    st.tuples(st.just("requeue_stale"), st.integers(0, 60)),
    st.tuples(st.just("expire"), st.integers(0, 30)),
    st.tuples(st.just("expire_unsent"), st.integers(0, 30)),
    st.tuples(st.just("remove"), st.integers(0, 40)),
    st.tuples(st.just("requeue_all")),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(step, max_size=60))
def test_housekeeping_does_what_a_full_scan_does(steps: list[tuple[Any, ...]]) -> None:
    pool = Mempool("c", None, None, max_txs=1_000, max_bytes=10**9, verified_cache=None)  # type: ignore[arg-type]
    model = Model()
    now_ms = 0
    for kind, *args in steps:
        now_ms = _step(pool, model, now_ms, kind, args)
        assert pool.pending_count() == len(model.pending) and len(pool) == len(model.entries)
        assert pool.pending_bytes() == sum(_size(tx_id) for tx_id in model.pending)


def _step(pool: Mempool, model: Model, now_ms: int, kind: str, args: list[Any]) -> int:
    """One step on the pool and on the model; returns the clock after it."""
    if kind == "add":
        tx = _tx(args[0], now_ms + args[1])
        pool.add(tx, signatures_verified=False)
        model.add(tx)
    elif kind == "remove":
        tx_id = args[0].to_bytes(32, "big")
        pool.remove([tx_id])
        model.remove([tx_id])
    elif kind == "requeue_all":
        pool.requeue_all()
        for tx_id, entry in model.entries.items():
            if entry[1] is not None:
                entry[1] = None
                model.pending[tx_id] = None
    else:
        now_ms += args[0]
        if kind == "take":
            assert [tx.tx_id for tx in pool.take(now_ms, args[1], 10**9)] == model.take(now_ms, args[1])
        elif kind == "requeue_stale":
            assert pool.requeue_stale(now_ms, REQUEUE_AFTER_MS) == model.requeue_stale(now_ms)
        elif kind == "expire_unsent":
            assert pool.expire_unsent(now_ms) == model.expire_unsent(now_ms)
        else:
            assert pool.expire(now_ms) == model.expire(now_ms)
    return now_ms
