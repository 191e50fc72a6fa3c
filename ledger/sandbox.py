"""A throwaway network in one process: deterministic keys, a genesis and signed calls.

Part of ledger/. Tests, the benchmark and demos build their ledgers from this instead of
repeating genesis boilerplate; nothing here runs in a real node.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from ledger.batch import Batch
from ledger.genesis import Genesis
from ledger.keys import KeyPair
from ledger.tx import SignedTx, TxBody, sign

SANDBOX_CHAIN_ID = "keiretsu-sandbox"
SANDBOX_GENESIS_TIME_MS = 1_700_000_000_000
SANDBOX_CURRENCY = "EUR"
MAX_SANDBOX_HOLDERS = 100_000
TX_LIFETIME_MS = 30 * 60 * 1000


def seeded_key(label: str, index: int = 0) -> KeyPair:
    """A key derived from a label: the same on every run, never to be used on a real network."""
    return KeyPair(hashlib.sha256(f"keiretsu-sandbox/{label}/{index}".encode()).digest())


@dataclass(frozen=True)
class Sandbox:
    """An operator, a cash agent for one currency and `holders` admitted investors."""

    genesis: Genesis
    operator: KeyPair
    agent: KeyPair
    holders: tuple[KeyPair, ...]

    @property
    def chain_id(self) -> str:
        return self.genesis.chain_id

    def call(self, keys: KeyPair | list[KeyPair], contract: str, method: str, args: dict[str, Any], *,
             nonce: int, time_ms: int | None = None) -> SignedTx:
        """A signed call, valid from `time_ms` (default: genesis time) for TX_LIFETIME_MS."""
        signers = [keys] if isinstance(keys, KeyPair) else list(keys)
        start_ms = self.genesis.genesis_time_ms if time_ms is None else time_ms
        body = TxBody(self.chain_id, contract, method, args, nonce, start_ms + TX_LIFETIME_MS,
                      tuple(k.public_key for k in signers))
        return sign(body, signers)

    def batch(self, txs: list[SignedTx] | list[bytes], time_ms: int | None = None) -> bytes:
        raws = tuple(t if isinstance(t, bytes) else t.raw for t in txs)
        return Batch(self.genesis.genesis_time_ms if time_ms is None else time_ms, raws).encode()


def make_sandbox(holders: int = 4, *, chain_id: str = SANDBOX_CHAIN_ID, label: str = "default") -> Sandbox:
    if not 0 <= holders <= MAX_SANDBOX_HOLDERS:
        raise ValueError(f"0..{MAX_SANDBOX_HOLDERS} holders")
    operator = seeded_key(label + "/operator")
    agent = seeded_key(label + "/agent")
    investors = tuple(seeded_key(label + "/holder", i) for i in range(holders))
    participants = [{"address": agent.address, "name": "Sandbox Bank", "roles": ["cash_agent"]}]
    participants += [{"address": k.address, "name": f"holder {i}", "roles": ["investor"]}
                     for i, k in enumerate(investors)]
    app_state = {
        "operators": [operator.address],
        "participants": participants,
        "currencies": [{"code": SANDBOX_CURRENCY, "decimals": 2, "agent": agent.address}],
    }
    genesis = Genesis(chain_id, SANDBOX_GENESIS_TIME_MS, (), app_state)
    return Sandbox(genesis, operator, agent, investors)
