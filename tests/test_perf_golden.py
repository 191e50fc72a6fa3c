"""Golden hashes: a fixed scenario replayed through the real executor ends at the block and state
hashes recorded before the contracts' hot path was optimised.

Every node must compute the same hashes from the same batches, old code or new: a speed-up that
changed one byte of state, one event or one refusal would fork a network running mixed versions.
The scenario mixes what the caches and fast paths touch: cash transfers, orders that rest, trade
and cancel, FOK kills, refusals rolled back alone, partial and whole freezes, and a dividend whose
record snapshot is open while trading continues. To re-record after an intended change of
behaviour (never for a speed-up): `python -m tests.test_perf_golden`.
"""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path
from typing import Any

from contracts.market_bench import BenchNetwork, flow, resting_orders
from contracts.registry import default_registry
from ledger.executor import Executor
from ledger.genesis import Genesis
from ledger.keys import KeyPair
from ledger.sandbox import SANDBOX_GENESIS_TIME_MS, Sandbox, seeded_key
from ledger.store import LedgerStore
from ledger.tx import SignedTx

TRADERS_PER_SIDE = 30
CURRENCY = "EUR"
BATCH_TXS = 100
STEP_MS = 3_000

# Recorded at commit 9cb3df0 (before the hot-path work), by `python -m tests.test_perf_golden`.
GOLDEN = {
    "blocks": 22,
    "valid": 1637,
    "invalid": 96,
    "last_block_hash": "0e6aabca70b80b1367a6f6bc455e946464e0647941f3f46154eb789708293a41",
    "state_hash": "22799a2b6c66cc890f6ff7e01b6fe55f9d0b78537da2d02b206652bce4e244f4",
}


class _Scenario:
    def __init__(self, path: Path) -> None:
        names = ("operator", "agent", "issuer", "regulator")
        self.operator, self.agent, self.issuer, self.regulator = (seeded_key("golden/" + n) for n in names)
        self.makers = tuple(seeded_key("golden/maker", i) for i in range(TRADERS_PER_SIDE))
        self.takers = tuple(seeded_key("golden/taker", i) for i in range(TRADERS_PER_SIDE))
        people = [{"address": self.agent.address, "roles": ["cash_agent"]},
                  {"address": self.issuer.address, "roles": ["issuer"]},
                  {"address": self.regulator.address, "roles": ["regulator"]}]
        people += [{"address": k.address, "roles": ["investor"]} for k in self.makers + self.takers]
        app_state = {"operators": [self.operator.address], "participants": people,
                     "currencies": [{"code": CURRENCY, "decimals": 2, "agent": self.agent.address}]}
        genesis = Genesis("golden-chain", SANDBOX_GENESIS_TIME_MS, (), app_state)
        self.sandbox = Sandbox(genesis, self.operator, self.agent, self.makers + self.takers)
        self.net = BenchNetwork(self.sandbox, self.issuer, self.makers, self.takers)
        self.store = LedgerStore(path)
        self.executor = Executor(self.store, default_registry(), genesis, verify_signatures=False, sync=False)
        self.executor.init_genesis()
        self.nonce = 0
        self.raft_index = 0
        self.time_ms = SANDBOX_GENESIS_TIME_MS
        self.valid = self.invalid = 0

    def sign(self, keys: KeyPair, contract: str, method: str, args: dict[str, Any]) -> SignedTx:
        self.nonce += 1
        return self.sandbox.call(keys, contract, method, args, nonce=self.nonce, time_ms=self.time_ms)

    def block(self, txs: list[SignedTx]) -> list[str]:
        """Apply txs in batches of BATCH_TXS, each batch a block STEP_MS later; the reasons."""
        reasons = []
        for start in range(0, max(len(txs), 1), BATCH_TXS):
            self.raft_index += 1
            self.time_ms += STEP_MS
            applied = self.executor.apply(self.sandbox.batch(txs[start:start + BATCH_TXS], self.time_ms),
                                          self.raft_index, 1)
            assert applied is not None and not applied.dropped
            for receipt in applied.block.receipts:
                self.valid += receipt.valid
                self.invalid += not receipt.valid
                reasons.append(str(receipt.reason))
        return reasons


def _setup(s: _Scenario) -> str:
    register = s.sign(s.issuer, "securities", "register", {
        "name": "Golden SME", "kind": "equity", "authorised_supply": 10**12, "prospectus_hash": bytes(32),
        "prospectus_uri": "https://example.org/golden"})
    s.block([register])
    isin = str(s.store.block(s.store.position.height).receipts[0].events[0].attrs["isin"])  # type: ignore[union-attr]
    funding = [s.sign(s.agent, "cash", "mint", {"currency": CURRENCY, "to": s.issuer.address,
                                                "amount": 10**12, "deposit_ref": "issuer"})]
    for n, trader in enumerate(s.makers + s.takers):
        funding.append(s.sign(s.agent, "cash", "mint", {"currency": CURRENCY, "to": trader.address,
                                                        "amount": 10**9 + n, "deposit_ref": "golden"}))
        funding.append(s.sign(s.issuer, "securities", "issue", {"isin": isin, "to": trader.address,
                                                                "quantity": 10**6 + n}))
    funding.append(s.sign(s.operator, "market", "open_book", {"isin": isin, "currency": CURRENCY,
                                                              "tick_size": 1, "lot_size": 1}))
    s.block(funding)
    return isin


def _freezes(s: _Scenario, isin: str) -> list[SignedTx]:
    def freeze(who: KeyPair, **scope: Any) -> SignedTx:
        return s.sign(s.regulator, "compliance", "freeze", {"account": who.address, "reason": "golden", **scope})

    return [freeze(s.takers[0], asset=CURRENCY, amount=10**9 - 5_000),  # partial: little cash spendable
            freeze(s.makers[1], asset=isin),  # whole asset: its resting orders become ineligible
            freeze(s.takers[2]),  # whole account
            freeze(s.makers[3], asset=isin, amount=10**6 - 30)]


def _transfers(s: _Scenario, isin: str, count: int) -> list[SignedTx]:
    people = s.makers + s.takers
    txs = []
    for n in range(count):
        source, target = people[n % len(people)], people[(n * 7 + 3) % len(people)]
        if n % 5 == 4:
            txs.append(s.sign(source, "securities", "transfer", {"isin": isin, "to": target.address,
                                                                  "quantity": 1 + n % 13}))
        else:
            txs.append(s.sign(source, "cash", "transfer", {"currency": CURRENCY, "to": target.address,
                                                            "amount": 1 + n % 97 + (n % 11) * 1_000}))
    return txs


def _extras(s: _Scenario, isin: str) -> list[SignedTx]:
    """FOK orders (one kills), a cancel of an order that is gone, a DvP and a self-transfer."""
    def order(who: KeyPair, side: str, price: int, quantity: int, tif: str) -> SignedTx:
        return s.sign(who, "market", "place_order", {"isin": isin, "currency": CURRENCY, "side": side,
                                                     "quantity": quantity, "price": price, "time_in_force": tif})

    dvp = {"seller": s.makers[5].address, "buyer": s.takers[5].address, "isin": isin, "quantity": 7,
           "currency": CURRENCY, "amount": 7_000}
    return [order(s.takers[4], "buy", 2_000, 10, "fok"), order(s.takers[4], "buy", 2_000, 10**7, "fok"),
            s.sign(s.takers[4], "market", "cancel_order", {"order_id": 1}),
            s.sandbox.call([s.makers[5], s.takers[5]], "settlement", "dvp", dvp, nonce=10**9, time_ms=s.time_ms),
            s.sign(s.takers[6], "cash", "transfer", {"currency": CURRENCY, "to": s.takers[6].address, "amount": 1})]


def replay(path: Path) -> dict[str, Any]:
    s = _Scenario(path)
    try:
        isin = _setup(s)
        s.block(resting_orders(s.sign, isin, s.net, 300))  # type: ignore[arg-type]
        s.block(_freezes(s, isin))
        s.block([s.sign(s.issuer, "corporate_actions", "declare_dividend", {
            "isin": isin, "currency": CURRENCY, "per_unit_minor": 3, "record_ms": s.time_ms + 4 * STEP_MS,
            "payment_ms": s.time_ms + 9 * STEP_MS})])
        s.block(flow(s.sign, isin, s.net, 600))  # type: ignore[arg-type]  # across record and payment
        s.block(_transfers(s, isin, 500))
        s.block(_extras(s, isin))
        s.block(flow(s.sign, isin, s.net, 200))  # type: ignore[arg-type]
        position = s.store.position
        return {"blocks": position.height, "valid": s.valid, "invalid": s.invalid,
                "last_block_hash": position.block_hash.hex(), "state_hash": position.state_hash.hex()}
    finally:
        s.store.close()


def test_the_fixed_scenario_ends_at_the_recorded_block_and_state_hashes(tmp_path: Path) -> None:
    assert replay(tmp_path / "data") == GOLDEN


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as directory:
        result = replay(Path(directory) / "data")
    print(result, hashlib.sha256(repr(result).encode()).hexdigest()[:8])
