"""The clients of a fault run: a small market that keeps trading while faults happen, and its history.

Part of tests/faults. Every submission is recorded as acknowledged (a committed receipt came
back), refused (a definite no: never to appear in the ledger), or ambiguous (timeout, reset,
5xx, still pending): it may or may not have been applied, but never twice.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import random
import time
from collections import Counter
from dataclasses import dataclass, field

from keiretsu_node.client import ApiError, Client, KeyPair, build, call
from keiretsu_node.client.calls import Call
from tests.cluster import LocalCluster

CURRENCY = "MXN"
INVESTORS = 6
START_CASH_MINOR = 10_000_000
START_SHARES = 100_000
SUBMIT_WAIT_MS = 4_000
CLIENT_TIMEOUT_S = 6.0
MAX_OPS_PER_TASK = 5_000
RETRY_PAUSE_S = 0.3
SETUP_WAIT_MS = 20_000
PER_CENT = 100
EXPIRED_PER_CENT = 3


class Outcome(enum.Enum):
    ACKNOWLEDGED = "acknowledged"
    REFUSED = "refused"
    AMBIGUOUS = "ambiguous"


@dataclass
class History:
    acknowledged: dict[str, int] = field(default_factory=dict)  # tx id -> height in the receipt
    refused: dict[str, str] = field(default_factory=dict)  # tx id -> code
    ambiguous: set[str] = field(default_factory=set)
    ops: Counter[str] = field(default_factory=Counter)
    retries: int = 0

    def record(self, tx_id: str, outcome: Outcome, detail: str | int) -> None:
        self.ambiguous.discard(tx_id)
        if outcome == Outcome.ACKNOWLEDGED:
            assert isinstance(detail, int)
            self.acknowledged[tx_id] = detail
        elif outcome == Outcome.REFUSED:
            self.refused[tx_id] = str(detail)
        else:
            self.ambiguous.add(tx_id)


@dataclass(frozen=True)
class Market:
    """Who trades: an operator, a cash agent, an issuer with one share, and investors."""

    chain_id: str
    operator: KeyPair
    bank: KeyPair
    issuer: KeyPair
    investors: tuple[KeyPair, ...]
    isin: str

    @property
    def accounts(self) -> list[str]:
        return [k.address for k in (self.bank, self.issuer, *self.investors)]


async def _commit(client: Client, chain_id: str, the_call: Call, signers: list[KeyPair]) -> dict[str, object]:
    status = await client.submit(build(chain_id, the_call, signers), wait=True, timeout_ms=SETUP_WAIT_MS)
    receipt = status.get("receipt") or {}
    assert status["status"] == "committed" and receipt.get("result") == "valid", status
    return status


async def open_market(cluster: LocalCluster, via: str) -> Market:
    """Admit everyone, register MXN and one share, and fund each investor; before any fault."""
    op, chain = cluster.operator, cluster.chain_id
    bank, issuer = KeyPair.generate(), KeyPair.generate()
    investors = tuple(KeyPair.generate() for _ in range(INVESTORS))
    async with Client(cluster.urls[via], timeout_s=30) as c:
        people = [(bank, "cash_agent"), (issuer, "issuer"), *((k, "investor") for k in investors)]
        for key, role in people:
            await _commit(c, chain, call("participants", "admit", address=key.address, name=role, roles=[role],
                                         kyc_hash=hashlib.sha256(key.public_key).digest()), [op])
        await _commit(c, chain, call("cash", "register_currency", currency=CURRENCY, decimals=2,
                                     agent=bank.address), [op])
        status = await _commit(c, chain, call("securities", "register", name="Fault Foods SA", kind="equity",
                                              authorised_supply=10**12, prospectus_hash=bytes(32),
                                              prospectus_uri="https://issuer.example/p.pdf"), [issuer])
        events = status["receipt"]["events"]  # type: ignore[index]
        isin = next(e["attrs"]["isin"] for e in events if e["kind"] == "security_registered")
        for i, key in enumerate((bank, *investors)):
            await _commit(c, chain, call("cash", "mint", currency=CURRENCY, to=key.address,
                                         amount=START_CASH_MINOR, deposit_ref=f"setup-{i}"), [bank])
        for key in investors:
            await _commit(c, chain, call("securities", "issue", isin=isin, to=key.address,
                                         quantity=START_SHARES), [issuer])
    return Market(chain, op, bank, issuer, investors, isin)


def _next_call(rng: random.Random, m: Market, serial: str) -> tuple[str, Call, list[KeyPair]]:
    """One trade, chosen by the task's seeded generator. Some will fail in the ledger (not enough
    funds): an invalid receipt is still a committed, acknowledged transaction."""
    a, b = rng.sample(m.investors, 2)
    roll = rng.randrange(100)
    if roll < 40:
        return "cash_transfer", call("cash", "transfer", currency=CURRENCY, to=b.address,
                                     amount=rng.randrange(1, 50_000)), [a]
    if roll < 60:
        return "share_transfer", call("securities", "transfer", isin=m.isin, to=b.address,
                                      quantity=rng.randrange(1, 500)), [a]
    if roll < 80:
        qty = rng.randrange(1, 200)
        return "dvp", call("settlement", "dvp", seller=a.address, buyer=b.address, isin=m.isin, quantity=qty,
                           currency=CURRENCY, amount=qty * rng.randrange(50, 500), reference=serial), [a, b]
    if roll < 88:
        return "mint", call("cash", "mint", currency=CURRENCY, to=a.address, amount=rng.randrange(1, 100_000),
                            deposit_ref=serial), [m.bank]
    if roll < 95:
        return "burn", call("cash", "burn", currency=CURRENCY, amount=rng.randrange(1, 20_000),
                            withdrawal_ref=serial), [m.bank]
    return "issue", call("securities", "issue", isin=m.isin, to=a.address, quantity=rng.randrange(1, 1_000)), [m.issuer]


async def _submit_once(client: Client, raw_tx: object) -> tuple[Outcome, str | int]:
    try:
        status = await client.submit(raw_tx, wait=True, timeout_ms=SUBMIT_WAIT_MS)  # type: ignore[arg-type]
    except ApiError as exc:
        if exc.status in (400, 413) or exc.code == "BUSY":
            return Outcome.REFUSED, exc.code  # the node said no before ordering anything
        return Outcome.AMBIGUOUS, exc.code  # timeout, reset, 5xx, or 409 on a retry
    if status.get("status") == "committed":
        return Outcome.ACKNOWLEDGED, int(status["height"])
    if status.get("status") == "dropped":
        return Outcome.REFUSED, f"dropped:{status.get('reason')}"
    return Outcome.AMBIGUOUS, str(status.get("status"))


async def trade(cluster: LocalCluster, market: Market, history: History, seed: int, task: int,
                deadline: float) -> None:
    """One client task: submit, record, retry an ambiguous one once elsewhere, until the deadline."""
    rng = random.Random(seed * 1_000 + task)
    clients = {n: Client(url, timeout_s=CLIENT_TIMEOUT_S) for n, url in cluster.urls.items()}
    names = sorted(clients)
    try:
        for serial in range(MAX_OPS_PER_TASK):
            if time.monotonic() >= deadline:
                return
            kind, the_call, signers = _next_call(rng, market, f"t{task}-{serial}")
            if rng.randrange(PER_CENT) < EXPIRED_PER_CENT:
                # Already expired: every node must refuse it, so "refused but applied" is tested live.
                kind, tx = f"expired_{kind}", build(market.chain_id, the_call, signers, expires_at_ms=1, now_ms=0)
            else:
                tx = build(market.chain_id, the_call, signers)
            tx_id = tx.tx_id.hex()
            history.ops[kind] += 1
            node = rng.choice(names)
            outcome, detail = await _submit_once(clients[node], tx)
            if outcome == Outcome.AMBIGUOUS and time.monotonic() < deadline:
                history.record(tx_id, outcome, detail)
                history.retries += 1
                await asyncio.sleep(RETRY_PAUSE_S)
                # The same signed bytes again, elsewhere: the ledger must apply it at most once.
                retry_outcome, retry_detail = await _submit_once(clients[rng.choice(names)], tx)
                if retry_outcome == Outcome.ACKNOWLEDGED:
                    outcome, detail = retry_outcome, retry_detail
                elif retry_outcome == Outcome.REFUSED and str(retry_detail).startswith("dropped"):
                    outcome, detail = Outcome.AMBIGUOUS, retry_detail
            history.record(tx_id, outcome, detail)
            if outcome != Outcome.ACKNOWLEDGED:
                await asyncio.sleep(0.05)  # do not spin against a node that is down
    finally:
        for c in clients.values():
            await c.close()
