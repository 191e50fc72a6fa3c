"""A venue in memory for the market tests: genesis, an equity, cash, a book, and calls that
commit or roll back like the executor's transactions.

Part of tests/. Contracts run on a per-call Overlay over one MemoryState, so a refused call
changes nothing; begin_block runs the hooks the executor would run at a block's start.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from contracts import balances
from contracts.base import BlockContext, Context
from contracts.registry import default_registry
from ledger.block import Event
from ledger.keys import KeyPair
from ledger.reasons import ContractError, Reason
from ledger.state import MemoryState, Overlay

CHAIN_ID = "market-test"
T0_MS = 1_750_000_000_000
CURRENCY = "EUR"


def key(label: str) -> KeyPair:
    return KeyPair(hashlib.sha256(f"market-test/{label}".encode()).digest())


@dataclass
class Outcome:
    reason: Reason
    detail: str
    events: list[Event] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.reason == Reason.OK

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [e.attrs for e in self.events if e.kind == kind]


class World:
    """Operator, regulator, cash agent, issuer and `investors` funded investors; one equity
    (self.isin) with a EUR book of the given tick and lot sizes."""

    def __init__(self, investors: int = 4, *, cash_each: int = 10**9, shares_each: int = 10_000,
                 tick_size: int = 1, lot_size: int = 1, qualified_only: bool = False,
                 max_holders: int | None = None, open_book: bool = True) -> None:
        self.registry = default_registry()
        self.state = Overlay(MemoryState())
        self.height = 0
        self.time_ms = T0_MS
        self.nonce = 0
        self.operator = key("operator").address
        self.regulator = key("regulator").address
        self.agent = key("agent").address
        self.issuer = key("issuer").address
        self.investors = [key(f"investor/{i}").address for i in range(investors)]
        people: list[dict[str, object]] = [{"address": self.agent, "roles": ["cash_agent"]},
                  {"address": self.issuer, "roles": ["issuer"]},
                  {"address": self.regulator, "roles": ["regulator"]}]
        people += [{"address": a, "roles": ["investor"], "qualified": True} for a in self.investors]
        app_state = {"operators": [self.operator], "participants": people,
                     "currencies": [{"code": CURRENCY, "decimals": 2, "agent": self.agent}]}
        ctx = self._ctx(None, ())
        for contract in self.registry.in_order():
            if contract.genesis is not None:
                contract.genesis(ctx, app_state)
        self.isin = self.register_equity(qualified_only=qualified_only, max_holders=max_holders)
        for account in self.investors:
            if cash_each:
                self.must(self.agent, "cash", "mint", currency=CURRENCY, to=account, amount=cash_each,
                          deposit_ref="opening")
            if shares_each:
                self.must(self.issuer, "securities", "issue", isin=self.isin, to=account, quantity=shares_each)
        if open_book:
            self.must(self.operator, "market", "open_book", isin=self.isin, currency=CURRENCY,
                      tick_size=tick_size, lot_size=lot_size)

    def register_equity(self, *, qualified_only: bool = False, max_holders: int | None = None) -> str:
        args: dict[str, Any] = {"name": "Acme SME", "kind": "equity", "authorised_supply": 10**12,
                                "prospectus_hash": bytes(32), "prospectus_uri": "https://example.org/p",
                                "qualified_only": qualified_only}
        if max_holders is not None:
            args["max_holders"] = max_holders
        done = self.must(self.issuer, "securities", "register", **args)
        return done.of_kind("security_registered")[0]["isin"]

    def _ctx(self, tx_id: bytes | None, signers: tuple[str, ...], state: Overlay | None = None) -> Context:
        return Context(state or self.state, BlockContext(CHAIN_ID, self.height, self.time_ms), tx_id, signers)

    def call(self, signers: str | tuple[str, ...], contract: str, method: str, **args: Any) -> Outcome:
        """Run one call as the executor runs a transaction: all of it, or nothing."""
        signers = (signers,) if isinstance(signers, str) else signers
        self.nonce += 1
        overlay = Overlay(self.state)
        ctx = self._ctx(self.nonce.to_bytes(32, "big"), signers, overlay)
        try:
            found = self.registry.method(contract, method)
            found.check_args(args)
            found.fn(ctx, **args)
        except ContractError as exc:
            return Outcome(exc.reason, exc.detail)
        overlay.merge_into(self.state)
        return Outcome(Reason.OK, "", list(ctx.events))

    def must(self, signers: str | tuple[str, ...], contract: str, method: str, **args: Any) -> Outcome:
        done = self.call(signers, contract, method, **args)
        assert done.ok, f"{contract}.{method} refused: {done.reason} {done.detail}"
        return done

    def begin_block(self, time_ms: int | None = None) -> list[Event]:
        """A new block at time_ms (never backwards), with every contract's block-start hook."""
        self.height += 1
        self.time_ms = max(self.time_ms, time_ms if time_ms is not None else self.time_ms)
        events: list[Event] = []
        for contract in self.registry.in_order():
            if contract.begin_block is None:
                continue
            overlay = Overlay(self.state)
            ctx = self._ctx(None, (), overlay)
            contract.begin_block(ctx)
            overlay.merge_into(self.state)
            events.extend(ctx.events)
        return events

    def system(self, work: Callable[[Context], Any]) -> tuple[Any, list[Event]]:
        """Run scheduled work (another contract's hook calling ours) in a system context."""
        overlay = Overlay(self.state)
        ctx = self._ctx(None, (), overlay)
        result = work(ctx)
        overlay.merge_into(self.state)
        return result, list(ctx.events)

    def query_ctx(self) -> Context:
        return self._ctx(None, ())

    def balance(self, asset: str, account: str) -> balances.Balance:
        return balances.get(self.query_ctx(), asset, account)

    def order(self, signer: str, side: str, quantity: int, price: int, **extra: Any) -> Outcome:
        return self.call(signer, "market", "place_order", isin=self.isin, currency=CURRENCY, side=side,
                         quantity=quantity, price=price, **extra)
