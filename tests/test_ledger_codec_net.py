"""A number the codec cannot hold fails the transaction that made it, not the block.

The contracts keep every stored and emitted integer within 2**64 - 1 (tests/test_contract_limits_*);
this is the executor's net under a defect of theirs: the same failure on every node, so the
transaction is committed invalid (LIMIT_EXCEEDED) and the chain goes on, instead of every node
stopping on the block and on every retry of it.
"""

from __future__ import annotations

import types
from typing import Any

import pytest

from contracts import builtin
from contracts.base import UINT, Context, MethodTable
from contracts.registry import Registry
from ledger import executor as executor_module
from ledger.codec import CodecError
from ledger.executor import Executor
from ledger.reasons import Reason
from ledger.sandbox import make_sandbox
from ledger.store import LedgerStore

BOX = make_sandbox(1, label="codec-net")
PAST_THE_CODEC = 2**64
HOOK = {"emit": 0}  # what the block-start hook emits this block (0: nothing)


def _probe_module() -> types.ModuleType:
    module = types.ModuleType("probe")
    module.NAME = "probe"
    methods = module.METHODS = MethodTable()

    @methods.method(n=UINT)
    def store(ctx: Context, n: int) -> None:
        ctx.put(b"probe\x1fstored", n * 4)  # a defect: the product is not kept in range

    @methods.method(n=UINT)
    def report(ctx: Context, n: int) -> None:
        ctx.put(b"probe\x1freported", 1)
        ctx.emit("probe_reported", total=n * 4)  # the event is encoded with the block, later

    @methods.method(n=UINT)
    def floaty(ctx: Context, n: int) -> None:
        ctx.put(b"probe\x1ffloat", n / 2)  # a bug of ours: a type the codec never holds

    @methods.method(n=UINT)
    def fine(ctx: Context, n: int) -> None:
        ctx.put(b"probe\x1ffine", n)
        ctx.emit("probe_fine", n=n)

    def begin_block(ctx: Context) -> None:
        if HOOK["emit"]:
            ctx.put(b"probe\x1fhook", 1)
            ctx.emit("probe_hook", total=HOOK["emit"])

    module.begin_block = begin_block
    return module


@pytest.fixture
def executor(tmp_path: Any) -> Any:
    store = LedgerStore(tmp_path / "ledger")
    ex = Executor(store, Registry([*builtin.MODULES, _probe_module()]), BOX.genesis, verify_signatures=False)
    ex.init_genesis()
    HOOK["emit"] = 0
    yield ex
    store.close()


def _apply(ex: Executor, index: int, calls: list[tuple[str, int]]) -> Any:
    holder = BOX.holders[0]
    txs = [BOX.call(holder, "probe", method, {"n": n}, nonce=index * 100 + i) for i, (method, n) in enumerate(calls)]
    applied = ex.apply(BOX.batch(txs), index, 1)
    assert applied is not None
    return applied


def test_a_state_write_or_an_event_past_the_codec_fails_its_transaction_alone(executor) -> None:
    applied = _apply(executor, 2, [("fine", 1), ("store", 2**62), ("report", 2**62), ("fine", 2)])
    reasons = [r.reason for r in applied.block.receipts]
    assert reasons == [Reason.OK, Reason.LIMIT_EXCEEDED, Reason.LIMIT_EXCEEDED, Reason.OK]
    assert "a value past what the ledger stores" in applied.block.receipts[1].detail
    state = executor.store.state
    assert state.get(b"probe\x1fstored") is None and state.get(b"probe\x1freported") is None  # rolled back
    assert state.get(b"probe\x1ffine") is not None
    assert executor.store.block(applied.block.height).hash() == applied.block.hash()  # stored, readable
    follow = _apply(executor, 3, [("fine", 3)])  # and the chain goes on
    assert follow.block.height == applied.block.height + 1


def test_scheduled_work_whose_events_are_past_the_codec_is_rolled_back_and_reported(executor) -> None:
    HOOK["emit"] = PAST_THE_CODEC
    applied = _apply(executor, 2, [("fine", 1)])
    (failed,) = [e for e in applied.block.system_events if e.kind == "scheduled_work_failed"]
    assert failed.attrs["contract"] == "probe" and failed.attrs["reason"] == "LIMIT_EXCEEDED"
    assert executor.store.state.get(b"probe\x1fhook") is None
    assert [r.reason for r in applied.block.receipts] == [Reason.OK]
    HOOK["emit"] = 7  # the next block's work fits: it runs
    again = _apply(executor, 3, [("fine", 2)])
    assert [e.kind for e in again.block.system_events] == ["probe_hook"]
    assert executor.store.state.get(b"probe\x1fhook") is not None


def test_a_value_of_a_type_the_codec_never_holds_is_our_bug_and_still_stops_the_node(executor) -> None:
    """Only magnitudes are the net's business: a float in a contract is a defect in code that
    every input would hit, and it must stop loudly (DESIGN.md: fail-stop on our bugs)."""
    with pytest.raises(CodecError) as stopped:
        _apply(executor, 2, [("fine", 1), ("floaty", 3)])
    assert "cannot be encoded" in str(stopped.value)


def test_a_transaction_whose_receipt_would_overfill_the_block_fails_alone(executor, monkeypatch) -> None:
    """A block past MAX_BLOCK_BYTES is refused by the block file on every node and every replay;
    the executor keeps the block's receipts within their share, failing the transaction whose
    receipt would pass it (rolled back, LIMIT_EXCEEDED), and the rest of the block goes on."""
    fine = _apply(executor, 2, [("fine", 1)])
    one_receipt = len(fine.block.receipts[0].encoded)
    monkeypatch.setattr(executor_module, "MAX_BLOCK_RECEIPTS_BYTES", 2 * one_receipt)
    applied = _apply(executor, 3, [("fine", 2), ("fine", 3), ("fine", 4)])
    assert [r.reason for r in applied.block.receipts] == [Reason.OK, Reason.OK, Reason.LIMIT_EXCEEDED]
    assert applied.block.receipts[2].detail == executor_module.RECEIPTS_FULL_DETAIL
    assert executor.store.state.get(b"probe\x1ffine") is not None
