"""Building and signing transactions for any built-in contract method.

Part of the Python SDK (keiretsu_node/client). Arguments are checked against the contract's own
declared types before signing, so a mistake is caught on the client with the same message the
node would give.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

from contracts.registry import Registry, default_registry
from ledger.keys import KeyPair
from ledger.reasons import ContractError
from ledger.tx import SignedTx, TxBody, sign

DEFAULT_EXPIRY_MS = 5 * 60 * 1000
_REGISTRY: Registry | None = None


def _registry() -> Registry:
    global _REGISTRY
    if _REGISTRY is None:
        _REGISTRY = default_registry()
    return _REGISTRY


class CallError(ValueError):
    """A call that no node would accept (unknown method or wrong arguments)."""


@dataclass(frozen=True)
class Call:
    contract: str
    method: str
    args: dict[str, Any]


def call(contract: str, method: str, **args: Any) -> Call:
    """A checked call: `call("cash", "transfer", currency="MXN", to=addr, amount=100)`."""
    try:
        _registry().check_call(contract, method, args)
    except ContractError as exc:
        raise CallError(f"{contract}.{method}: {exc.reason}: {exc.detail}") from exc
    return Call(contract, method, args)


def build(chain_id: str, the_call: Call, signers: list[KeyPair], *, nonce: int | None = None,
          expires_at_ms: int | None = None, now_ms: int | None = None) -> SignedTx:
    """Sign a call by every key in `signers` (the first is the sender).

    The nonce is random by default, so one account can keep many transactions in flight.
    """
    if not signers:
        raise CallError("a transaction needs at least one signer")
    now = now_ms if now_ms is not None else int(time.time() * 1000)
    body = TxBody(
        chain_id, the_call.contract, the_call.method, the_call.args,
        nonce if nonce is not None else int.from_bytes(os.urandom(8), "big"),
        expires_at_ms if expires_at_ms is not None else now + DEFAULT_EXPIRY_MS,
        tuple(key.public_key for key in signers),
    )
    return sign(body, signers)
