"""Which account a signing key acts for: the default binding and lost-key re-binding.

Part of ledger/. A key controls the address derived from it until a recovery re-binds that
address to a new key; from then the old key is refused and the new key acts for the old address.
"""

from __future__ import annotations

import functools

from ledger.keys import address_of
from ledger.reasons import ContractError, Reason
from ledger.state import KEY_CACHE_ENTRIES, StateReader, state_key

AUTH_NAMESPACE = "auth"


# Cached: every transaction resolves its signers through both keys.
@functools.lru_cache(maxsize=KEY_CACHE_ENTRIES)
def key_binding_key(public_key: bytes) -> bytes:
    return state_key(AUTH_NAMESPACE, "key", public_key)


@functools.lru_cache(maxsize=KEY_CACHE_ENTRIES)
def account_key_key(address: str) -> bytes:
    return state_key(AUTH_NAMESPACE, "acct", address)


def resolve_signer(state: StateReader, public_key: bytes) -> str:
    """The account a key signs for now; KEY_REVOKED if a recovery took that right away."""
    bound = state.get(key_binding_key(public_key))
    address = bound.decode("ascii") if bound is not None else address_of(public_key)
    current = state.get(account_key_key(address))
    if current is not None and current != public_key:
        raise ContractError(Reason.KEY_REVOKED, f"this key no longer signs for {address}")
    return address


def current_key(state: StateReader, address: str) -> bytes | None:
    """The key bound to an address by a recovery, or None if it is still its original key."""
    return state.get(account_key_key(address))
