"""Lifecycle through the real executor on LevelDB: thousands of holders paid in bounded chunks over
consecutive blocks, receipts in each holder's history, and replay from genesis on a second store."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from contracts import balances, corporate_actions, offerings
from contracts.base import BlockContext, Context
from contracts.registry import default_registry
from ledger.batch import Batch
from ledger.block import Block, Receipt
from ledger.executor import Executor
from ledger.genesis import Genesis
from ledger.keys import KeyPair
from ledger.reasons import Reason
from ledger.state import Overlay
from ledger.store import HISTORY_SYSTEM, LedgerStore
from ledger.tx import TxBody, sign

CHAIN_ID = "keiretsu-lifecycle"
START_MS = 1_700_000_000_000
DAY_MS = 24 * 60 * 60 * 1000
HOLDERS = 2000


def key(name: str) -> KeyPair:
    return KeyPair(hashlib.sha256(b"lifecycle:" + name.encode()).digest())


def block_at(store: LedgerStore, height: int) -> Block:
    found = store.block(height)
    assert found is not None, f"no block {height}"
    return found


def block_hashes(store: LedgerStore) -> list[bytes]:
    return [block_at(store, h).hash() for h in range(store.position.height + 1)]


def app_state(holders: int) -> dict[str, Any]:
    people = [("bank", ["cash_agent"]), ("issuer", ["issuer"])] + [(f"h{i:05d}", ["investor"]) for i in range(holders)]
    return {
        "operators": [key("operator").address],
        "participants": [{"address": key(n).address, "name": n, "roles": r} for n, r in people],
        "currencies": [{"code": "MXN", "decimals": 2, "agent": key("bank").address}],
    }


class Chain:
    """One node's executor; every applied batch is kept so another store can replay them."""

    def __init__(self, path: Path, holders: int) -> None:
        self.store = LedgerStore(path)
        self.genesis = Genesis(CHAIN_ID, START_MS, (), app_state(holders))
        self.executor = Executor(self.store, default_registry(), self.genesis, sync=False)
        self.executor.init_genesis()
        self.batches: list[bytes] = []
        self.time_ms = START_MS
        self.nonce = 0

    def tx(self, signer: str, contract: str, method: str, **args: Any) -> bytes:
        self.nonce += 1
        body = TxBody(CHAIN_ID, contract, method, args, self.nonce, self.time_ms + 60_000, (key(signer).public_key,))
        return sign(body, [key(signer)]).raw

    def block(self, raws: list[bytes], advance_ms: int = 1000) -> Block:
        self.time_ms += advance_ms
        batch = Batch(self.time_ms, tuple(raws)).encode()
        self.batches.append(batch)
        applied = self.executor.apply(batch, len(self.batches), 1)
        assert applied is not None and not applied.dropped
        return applied.block

    def ok(self, signer: str, contract: str, method: str, **args: Any) -> Receipt:
        receipt = self.block([self.tx(signer, contract, method, **args)]).receipts[0]
        assert receipt.reason == Reason.OK, f"{contract}.{method}: {receipt.reason} {receipt.detail}"
        return receipt

    def view(self) -> Context:
        return Context(Overlay(self.store.state), BlockContext(CHAIN_ID, 0, self.time_ms), None, ())

    def due_now(self) -> bool:
        """What the node asks to decide on an empty block: is scheduled work due at this time?"""
        due = [c.next_due_ms(self.view()) for c in self.executor.registry.in_order() if c.next_due_ms]
        return any(d is not None and d <= self.time_ms for d in due)


def test_a_dividend_to_thousands_of_holders_is_paid_in_bounded_chunks_and_replays(tmp_path: Path) -> None:
    chain = Chain(tmp_path / "a", HOLDERS)
    isin = str(chain.ok("issuer", "securities", "register", name="Big SA", kind="equity", authorised_supply=10**9,
                        prospectus_hash=bytes(32), prospectus_uri="x").events[0].attrs["isin"])
    holders = [key(f"h{i:05d}").address for i in range(HOLDERS)]
    issued = chain.block([chain.tx("issuer", "securities", "issue", isin=isin, to=a, quantity=i + 1)
                          for i, a in enumerate(holders)])
    assert all(r.reason == Reason.OK for r in issued.receipts)
    total_units = HOLDERS * (HOLDERS + 1) // 2
    chain.ok("bank", "cash", "mint", currency="MXN", to=key("issuer").address, amount=10**10, deposit_ref="d")
    chain.ok("issuer", "corporate_actions", "declare_dividend", isin=isin, currency="MXN", per_unit_minor=3,
             record_ms=chain.time_ms + 1500, payment_ms=chain.time_ms + 5000)
    record_block = chain.block([chain.tx("h00000", "securities", "transfer", isin=isin, to=holders[1],
                                         quantity=1)])
    # h00000 sold after the record time: still paid for its unit; h00001 is paid for 2 units, not 3.
    chain.time_ms += 5000
    paid_per_block: list[int] = []
    while chain.due_now() and len(paid_per_block) < 50:
        block = chain.block([], advance_ms=0)
        paid_per_block.append(sum(1 for e in block.system_events if e.kind == "dividend_paid"))
    assert record_block.receipts[0].reason == Reason.OK
    assert not chain.due_now(), "nothing is due once the last chunk is paid"
    assert max(paid_per_block) <= corporate_actions.MAX_PAYMENTS_PER_BLOCK
    assert sum(paid_per_block) == HOLDERS and len(paid_per_block) >= HOLDERS // corporate_actions.MAX_PAYMENTS_PER_BLOCK
    view = chain.view()
    assert [balances.get(view, "MXN", a).total for a in holders[:3]] == [3, 6, 9]
    assert balances.get(view, "MXN", holders[-1]).total == 3 * HOLDERS
    assert balances.get(view, "MXN", key("issuer").address) == balances.Balance(10**10 - 3 * total_units, 0)
    # The receipt is in the holder's own history, as a system event of the block that paid it.
    entry = [e for e in chain.store.history(holders[-1]) if e.kind == HISTORY_SYSTEM][-1]
    event = block_at(chain.store, entry.height).system_events[entry.index]
    assert event.kind == "dividend_paid" and event.attrs["account"] == holders[-1]

    replica = Chain(tmp_path / "b", HOLDERS)
    for index, batch in enumerate(chain.batches, start=1):
        replica.executor.apply(batch, index, 1)
    assert block_hashes(replica.store) == block_hashes(chain.store)
    assert replica.store.position.state_hash == chain.store.position.state_hash
    chain.store.close()
    replica.store.close()


def test_offering_split_and_bond_service_replay_to_identical_hashes(tmp_path: Path) -> None:
    chain = Chain(tmp_path / "a", 40)
    investors = [f"h{i:05d}" for i in range(40)]
    chain.block([chain.tx("bank", "cash", "mint", currency="MXN", to=key(n).address, amount=10**8, deposit_ref="d")
                 for n in ["issuer"] + investors])
    register = {"prospectus_hash": bytes(32), "prospectus_uri": "x", "authorised_supply": 10**6}
    isin = str(chain.ok("issuer", "securities", "register", name="Eq", kind="equity",
                        **register).events[0].attrs["isin"])
    dates = [chain.time_ms + 10_000, chain.time_ms + 20_000]
    bond = str(chain.ok("issuer", "securities", "register", name="Bd", kind="bond", face_value_minor=10_000,
                        currency="MXN", coupon_rate_bps=500, coupon_schedule_ms=dates, maturity_ms=dates[-1],
                        **register).events[0].attrs["isin"])
    oid = int(chain.ok("issuer", "offerings", "open_offering", isin=isin, currency="MXN", price_minor=250,
                       min_units=100, max_units=1000, min_per_investor=1, max_per_investor=500,
                       opens_ms=chain.time_ms, closes_ms=chain.time_ms + 3000).events[0].attrs["offering_id"])
    subscribed = chain.block([chain.tx(n, "offerings", "subscribe", offering_id=oid, units=7 * (i % 9) + 5)
                              for i, n in enumerate(investors)])
    assert all(r.reason == Reason.OK for r in subscribed.receipts)
    chain.block([chain.tx(n, "offerings", "subscribe", offering_id=oid, units=1) for n in investors[:3]])
    chain.block([], advance_ms=3000)
    assert offerings.require_offering(chain.view(), oid).status == offerings.SETTLED
    sold = [balances.get(chain.view(), isin, key(n).address).total for n in investors]
    assert sum(sold) == 1000
    chain.block([chain.tx("issuer", "securities", "issue", isin=bond, to=key(n).address, quantity=2)
                 for n in investors])
    chain.ok("issuer", "corporate_actions", "declare_split", isin=isin, ratio_to=1, ratio_from=3,
             effective_ms=chain.time_ms + 5000)
    for _ in range(30):
        chain.block([], advance_ms=1000)
    view = chain.view()
    assert [balances.get(view, isin, key(n).address).total for n in investors] == [s // 3 for s in sold]
    assert balances.supply(view, bond) == (80, 80)
    replica = Chain(tmp_path / "b", 40)
    for index, batch in enumerate(chain.batches, start=1):
        replica.executor.apply(batch, index, 1)
    assert block_hashes(replica.store) == block_hashes(chain.store)
    assert replica.store.position.state_hash == chain.store.position.state_hash
    chain.store.close()
    replica.store.close()
