"""A small world for the contract tests: a state, a clock, named participants, and a call helper.

Each call runs like the executor runs a transaction: on its own overlay, merged only on success.
ExecWorld drives the real Executor on a temporary LedgerStore, with real keys and signatures.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contracts import balances, participants
from contracts.base import BlockContext, Context
from contracts.registry import default_registry
from ledger.batch import Batch
from ledger.block import Event, Receipt
from ledger.executor import Executor
from ledger.genesis import Genesis
from ledger.keys import KeyPair
from ledger.reasons import ContractError, Reason
from ledger.state import MemoryState, Overlay
from ledger.store import LedgerStore
from ledger.tx import TxBody, sign

CHAIN_ID = "keiretsu-test"
START_MS = 1_700_000_000_000
KYC = bytes(32)
PROSPECTUS = hashlib.sha256(b"prospectus").digest()


def key(name: str) -> KeyPair:
    """A deterministic key per name, so failing examples replay."""
    return KeyPair(hashlib.sha256(b"test-key:" + name.encode()).digest())


def addr(name: str) -> str:
    return key(name).address


@dataclass(frozen=True)
class Outcome:
    reason: Reason
    detail: str
    events: tuple[Event, ...]

    def kinds(self) -> list[str]:
        return [e.kind for e in self.events]


class World:
    """Contracts over an in-memory state; signers are addresses (the executor resolves keys)."""

    def __init__(self, operators: tuple[str, ...] = ("operator",)) -> None:
        self.state = Overlay(MemoryState())
        self.registry = default_registry()
        self.height = 0
        self.time_ms = START_MS
        self.calls = 0
        ctx = self.view()
        for contract in self.registry.in_order():
            if contract.genesis is not None:
                contract.genesis(ctx, {"operators": [addr(o) for o in operators]})

    def context(self, signers: tuple[str, ...], tx_id: bytes | None = b"\x01" * 32) -> Context:
        return Context(Overlay(self.state), BlockContext(CHAIN_ID, self.height, self.time_ms), tx_id, signers)

    def view(self) -> Context:
        return Context(self.state, BlockContext(CHAIN_ID, self.height, self.time_ms), None, ())

    def call(self, signers: str | tuple[str, ...], contract: str, method: str, /, **args: Any) -> Outcome:
        names = (signers,) if isinstance(signers, str) else signers
        self.height += 1
        self.calls += 1
        ctx = self.context(tuple(addr(n) for n in names), hashlib.sha256(str(self.calls).encode()).digest())
        try:
            found = self.registry.method(contract, method)
            found.check_args(args)
            found.fn(ctx, **args)
        except ContractError as exc:
            return Outcome(exc.reason, exc.detail, ())
        assert isinstance(ctx.state, Overlay)
        ctx.state.merge_into(self.state)
        return Outcome(Reason.OK, "", tuple(ctx.events))

    def ok(self, signers: str | tuple[str, ...], contract: str, method: str, /, **args: Any) -> Outcome:
        out = self.call(signers, contract, method, **args)
        assert out.reason == Reason.OK, f"{contract}.{method} failed: {out.reason} {out.detail}"
        return out

    def refused(self, expected: Reason, signers: str | tuple[str, ...], contract: str, method: str, /,
                **args: Any) -> Outcome:
        before = dict(self.state.writes)
        out = self.call(signers, contract, method, **args)
        assert out.reason == expected, f"{contract}.{method}: expected {expected}, got {out.reason} {out.detail}"
        assert self.state.writes == before, "a refused call changed the state"
        return out

    def bal(self, asset: str, name: str) -> balances.Balance:
        return balances.get(self.view(), asset, addr(name))

    # ------------------------------------------------------------ a typical market

    def admit(self, name: str, *roles: str, qualified: bool = False) -> None:
        self.ok("operator", "participants", "admit", address=addr(name), name=name, roles=list(roles),
                kyc_hash=KYC, qualified=qualified)

    def register_equity(self, issuer: str = "issuer", supply: int = 1_000_000, **rules: Any) -> str:
        out = self.ok(issuer, "securities", "register", name="Tortillas SA", kind="equity",
                      authorised_supply=supply, prospectus_hash=PROSPECTUS,
                      prospectus_uri="https://example.invalid/p.pdf", **rules)
        return str(out.events[0].attrs["isin"])


def market(**equity_rules: Any) -> tuple[World, str]:
    """Operator, regulator, bank (MXN agent), issuer, investors alice/bob/carol (carol qualified),
    outsider dave (admitted, no investor role); alice holds 1000 shares and everyone 1_000_000 MXN."""
    world = World()
    world.admit("regulator", participants.REGULATOR)
    world.admit("bank", "cash_agent")
    world.admit("issuer", participants.ISSUER)
    world.admit("alice", participants.INVESTOR)
    world.admit("bob", participants.INVESTOR)
    world.admit("carol", participants.INVESTOR, qualified=True)
    world.admit("dave", participants.ISSUER)
    world.ok("operator", "cash", "register_currency", currency="MXN", decimals=2, agent=addr("bank"))
    for name in ("issuer", "alice", "bob", "carol", "dave"):
        world.ok("bank", "cash", "mint", currency="MXN", to=addr(name), amount=1_000_000, deposit_ref="d")
    isin = world.register_equity(**equity_rules)
    world.ok("issuer", "securities", "issue", isin=isin, to=addr("alice"), quantity=1000)
    return world, isin


class ExecWorld:
    """The real executor on a LevelDB store in `path`: one block per submit, real signatures."""

    def __init__(self, path: Path, app_state: dict[str, Any]) -> None:
        self.store = LedgerStore(path)
        self.genesis = Genesis(CHAIN_ID, START_MS, (), app_state)
        self.executor = Executor(self.store, default_registry(), self.genesis, sync=False)
        self.executor.init_genesis()
        self.raft_index = 0
        self.nonce = 0
        self.time_ms = START_MS
        self.batches: list[bytes] = []  # every batch applied, in order, for a replay

    @classmethod
    def with_investors(cls, path: Path, *investors: str) -> ExecWorld:
        """An operator, a bank (the MXN cash agent), an issuer and the named investors."""
        def entry(name: str, *roles: str) -> dict[str, Any]:
            return {"address": addr(name), "name": name, "roles": list(roles)}

        return cls(path, {
            "operators": [addr("operator")],
            "participants": [entry("bank", "cash_agent"), entry("issuer", "issuer")]
            + [entry(n, "investor") for n in investors],
            "currencies": [{"code": "MXN", "decimals": 2, "agent": addr("bank")}],
        })

    def close(self) -> None:
        self.store.close()

    def submit(self, keys: list[KeyPair], contract: str, method: str, **args: Any) -> Receipt:
        self.nonce += 1
        body = TxBody(CHAIN_ID, contract, method, args, self.nonce, self.time_ms + 60_000,
                      tuple(k.public_key for k in keys))
        return self.submit_raw([sign(body, keys).raw])[0]

    def submit_raw(self, raws: list[bytes]) -> tuple[Receipt, ...]:
        self.raft_index += 1
        self.time_ms += 1000
        batch = Batch(self.time_ms, tuple(raws)).encode()
        self.batches.append(batch)
        applied = self.executor.apply(batch, self.raft_index, 1)
        assert applied is not None
        return applied.block.receipts

    def view(self) -> Context:
        return Context(Overlay(self.store.state), BlockContext(CHAIN_ID, 0, self.time_ms), None, ())
