"""Compliance controls: freezes of accounts or parts of balances, forced transfers, pauses.

Part of contracts/. Every control is a signed transaction of an active regulator, so its author
is in the history; cash, securities and settlement ask is_frozen/check_spendable before moving.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace
from typing import NamedTuple

from contracts import balances, participants, securities, settlement
from contracts.base import ADDRESS, AMOUNT, ASSET_ID, MAX_AMOUNT, TEXT, Context, MethodTable
from ledger.reasons import ContractError, Reason
from ledger.state import KEY_CACHE_ENTRIES, prefix_of, state_key

NAME = "compliance"
METHODS = MethodTable()
WHOLE_ACCOUNT = "*"  # the scope of a freeze of every asset; never an asset id (those are alphanumeric)
MAX_FREEZES_LISTED = 1000


@dataclass(frozen=True)
class Freeze:
    """A regulator's freeze of one account.

    asset None: every asset of the account, free and locked, in and out.
    amount None: the whole balance of `asset`, in and out. Otherwise a partial freeze: `amount`
    units of the FREE balance cannot leave (spendable = max(0, free - amount)); receiving is allowed
    and incoming units fill the frozen part first.
    """

    account: str
    asset: str | None
    amount: int | None
    reason: str
    by: str
    height: int


class FreezeState(NamedTuple):
    """What the freezes of one account mean for one asset, from one read of each freeze key."""

    frozen: bool  # nothing of the asset may enter or leave the account
    partial: int  # units of the free balance that may not leave (meaningful when not frozen)


NOT_FROZEN = FreezeState(False, 0)
WHOLLY_FROZEN = FreezeState(True, 0)


@functools.lru_cache(maxsize=KEY_CACHE_ENTRIES)
def freeze_key(account: str, scope: str) -> bytes:
    return state_key("freeze", account, scope)


@functools.lru_cache(maxsize=KEY_CACHE_ENTRIES)
def _freeze_keys(account: str, asset: str) -> tuple[bytes, bytes]:
    """The whole-account and the per-asset freeze key, in one cached call (twice per transfer)."""
    return freeze_key(account, WHOLE_ACCOUNT), freeze_key(account, asset)


@functools.lru_cache(maxsize=KEY_CACHE_ENTRIES)
def _pair_keys(account: str, first: str, second: str) -> tuple[bytes, bytes, bytes]:
    """The whole-account key and the two per-asset keys, in one cached call (twice per order)."""
    return freeze_key(account, WHOLE_ACCOUNT), freeze_key(account, first), freeze_key(account, second)


def freeze_state(ctx: Context, account: str, asset: str) -> FreezeState:
    """One lookup a transfer reuses for every freeze rule of (account, asset)."""
    whole, scoped = _freeze_keys(account, asset)
    state = ctx.state
    if state.get(whole) is not None:
        return WHOLLY_FROZEN
    if state.get(scoped) is None:  # the common case, answered without the record memo's call
        return NOT_FROZEN
    return _scoped_state(ctx, scoped)


def freeze_states(ctx: Context, account: str, first: str, second: str) -> tuple[FreezeState, FreezeState]:
    """(freeze_state(first), freeze_state(second)), reading the whole-account key once: an
    order's entry checks and a maker's eligibility each ask about the security and the currency."""
    whole, first_key, second_key = _pair_keys(account, first, second)
    get = ctx.state.get
    if get(whole) is not None:
        return WHOLLY_FROZEN, WHOLLY_FROZEN
    return (NOT_FROZEN if get(first_key) is None else _scoped_state(ctx, first_key),
            NOT_FROZEN if get(second_key) is None else _scoped_state(ctx, second_key))


def _scoped_state(ctx: Context, key: bytes) -> FreezeState:
    """What the per-asset freeze record at key (which exists) means."""
    amount = ctx.record(key)["amount"]
    return WHOLLY_FROZEN if amount is None else FreezeState(False, amount)


def get_freeze(ctx: Context, account: str, asset: str | None) -> Freeze | None:
    raw = ctx.record(freeze_key(account, asset or WHOLE_ACCOUNT))
    if raw is None:
        return None
    return Freeze(account, asset, raw["amount"], raw["reason"], raw["by"], raw["height"])


def freezes(ctx: Context, account: str) -> list[Freeze]:
    """Every freeze on an account, the whole-account one first."""
    out = []
    for key, raw in ctx.scan(prefix_of("freeze", account), MAX_FREEZES_LISTED):
        scope = key.rsplit(b"\x1f", 1)[1].decode("ascii")
        asset = None if scope == WHOLE_ACCOUNT else scope
        out.append(Freeze(account, asset, raw["amount"], raw["reason"], raw["by"], raw["height"]))
    return out


def is_frozen(ctx: Context, account: str, asset: str) -> bool:
    """True if nothing of `asset` may enter or leave the account (a whole-account or whole-asset freeze)."""
    return freeze_state(ctx, account, asset).frozen


def frozen_amount(ctx: Context, account: str, asset: str) -> int:
    """Units of the free balance that may not be spent under a partial freeze (0 if none)."""
    found = get_freeze(ctx, account, asset)
    return 0 if found is None or found.amount is None else found.amount


def check_not_frozen(ctx: Context, account: str, asset: str) -> FreezeState:
    """ACCOUNT_FROZEN if nothing of `asset` may move at `account`; else its freeze state, which
    the caller may pass on to check_spendable (nothing is written in between)."""
    return refuse_frozen(account, asset, freeze_state(ctx, account, asset))


def refuse_frozen(account: str, asset: str, state: FreezeState) -> FreezeState:
    """check_not_frozen on a freeze state already read (freeze_states answers two at once)."""
    if state.frozen:
        raise ContractError(Reason.ACCOUNT_FROZEN, f"{account} is frozen for {asset}")
    return state


def spendable(ctx: Context, account: str, asset: str) -> int:
    """What of the free balance may leave the account now."""
    if is_frozen(ctx, account, asset):
        return 0
    return max(0, balances.get(ctx, asset, account).free - frozen_amount(ctx, account, asset))


def check_spendable(ctx: Context, account: str, asset: str, amount: int,
                    known: FreezeState | None = None, held: balances.Balance | None = None) -> balances.Balance:
    """Refuse to spend (move or lock) more of the free balance than a freeze leaves.

    INSUFFICIENT_FREE_BALANCE if the free balance itself is short, ACCOUNT_FROZEN if the
    shortfall is due to a freeze. The market and offerings call this before balances.lock.
    `known`: the freeze state check_not_frozen just returned for the same account and asset;
    `held`: the account's balance of the asset as the caller just read it (nothing written since).
    Returns the balance it read, for a caller that moves the amount next.
    """
    state = check_not_frozen(ctx, account, asset) if known is None else known
    if state.frozen:
        raise ContractError(Reason.ACCOUNT_FROZEN, f"{account} is frozen for {asset}")
    if held is None:
        held = balances.get(ctx, asset, account)
    free = held.free
    if free < amount:
        raise ContractError(Reason.INSUFFICIENT_FREE_BALANCE, f"{account} has {free} free {asset}, needs {amount}")
    frozen = state.partial
    if free - frozen < amount:
        raise ContractError(Reason.ACCOUNT_FROZEN, f"{frozen} of the {free} free {asset} of {account} are frozen")
    return held


def convert_partial_freeze(ctx: Context, account: str, asset: str, ratio_to: int,
                           ratio_from: int) -> tuple[int, int] | None:
    """A split converts a partial freeze of `asset` at `account` into the new units.

    Rounded up (at least the frozen value stays frozen) and capped at MAX_AMOUNT; reason, author
    and height are kept. Returns (amount before, amount after), or None if there is no partial freeze.
    """
    found = get_freeze(ctx, account, asset)
    if found is None or found.amount is None:
        return None
    after = min(-(-found.amount * ratio_to // ratio_from), MAX_AMOUNT)
    ctx.put(freeze_key(account, asset), {"amount": after, "reason": found.reason, "by": found.by,
                                         "height": found.height})
    ctx.touch(account)
    return found.amount, after


# ---------------------------------------------------------------- methods


@METHODS.method(optional=("asset", "amount"), account=ADDRESS, reason=TEXT, asset=ASSET_ID, amount=AMOUNT)
def freeze(ctx: Context, account: str, reason: str, asset: str | None = None, amount: int | None = None) -> None:
    """A regulator freezes an account, one asset of it, or `amount` units of one asset.

    A freeze of the same scope replaces the previous one (that is how a partial freeze changes).
    """
    regulator = participants.require_role_signer(ctx, participants.REGULATOR)
    if not reason:
        raise ContractError(Reason.BAD_ARGUMENTS, "a freeze states its reason")
    if amount is not None and asset is None:
        raise ContractError(Reason.BAD_ARGUMENTS, "a partial freeze names its asset")
    if participants.get(ctx, account) is None:
        raise ContractError(Reason.NOT_FOUND, f"{account} is not a participant")
    if asset is not None:
        settlement.asset_kind(ctx, asset)
    ctx.put(freeze_key(account, asset or WHOLE_ACCOUNT),
            {"amount": amount, "reason": reason, "by": regulator, "height": ctx.block.height})
    ctx.touch(account)
    ctx.emit("account_frozen", account=account, asset=asset, amount=amount, reason=reason, by=regulator)


@METHODS.method(optional=("asset",), account=ADDRESS, reason=TEXT, asset=ASSET_ID)
def unfreeze(ctx: Context, account: str, reason: str, asset: str | None = None) -> None:
    """A regulator lifts the freeze of exactly that scope (the whole account, or one asset)."""
    regulator = participants.require_role_signer(ctx, participants.REGULATOR)
    key = freeze_key(account, asset or WHOLE_ACCOUNT)
    if not ctx.exists(key):
        raise ContractError(Reason.NOT_FOUND, f"no freeze of {account} for {asset or 'the whole account'}")
    ctx.delete(key)
    ctx.touch(account)
    ctx.emit("account_unfrozen", account=account, asset=asset, reason=reason, by=regulator)


@METHODS.method(asset=ASSET_ID, source=ADDRESS, target=ADDRESS, quantity=AMOUNT, reason=TEXT)
def forced_transfer(ctx: Context, asset: str, source: str, target: str, quantity: int, reason: str) -> None:
    """A regulator moves free units from any account to an eligible one, with a stated reason.

    It overrides the source's freeze, suspension, the asset's pause and lock-up; the target must
    still be able to hold the asset. The moved units come out of a partial freeze first.
    """
    regulator = participants.require_role_signer(ctx, participants.REGULATOR)
    if not reason:
        raise ContractError(Reason.BAD_ARGUMENTS, "a forced transfer states its reason")
    if source == target:
        raise ContractError(Reason.SELF_TRANSFER, "source and target are the same account")
    kind = settlement.asset_kind(ctx, asset)
    if kind == settlement.SECURITY:
        instrument = securities.require_instrument(ctx, asset)
        held = balances.get(ctx, asset, source).total
        securities.check_receiver(ctx, instrument, target,
                                  freed_slots=securities.freed_slots_of(instrument, source, held, quantity))
    else:
        participants.require_eligible(ctx, target, Reason.RECEIVER_NOT_ELIGIBLE)
        check_not_frozen(ctx, target, asset)
    balances.move(ctx, asset, source, target, quantity)
    partial = get_freeze(ctx, source, asset)
    if partial is not None and partial.amount is not None:
        left = partial.amount - quantity
        if left > 0:
            ctx.put(freeze_key(source, asset), {"amount": left, "reason": partial.reason, "by": partial.by,
                                                "height": partial.height})
        else:
            ctx.delete(freeze_key(source, asset))
    ctx.emit("forced_transfer", asset=asset, source=source, target=target, quantity=quantity, reason=reason,
             by=regulator)


def _set_paused(ctx: Context, isin: str, paused: bool, reason: str) -> None:
    regulator = participants.require_role_signer(ctx, participants.REGULATOR)
    instrument = securities.require_instrument(ctx, isin)
    if instrument.paused == paused:
        raise ContractError(Reason.INVALID_STATE, f"{isin} is already {'paused' if paused else 'trading'}")
    securities.save_instrument(ctx, replace(instrument, paused=paused))
    ctx.emit("security_paused" if paused else "security_resumed", isin=isin, reason=reason, by=regulator)


@METHODS.method(isin=ASSET_ID, reason=TEXT)
def pause(ctx: Context, isin: str, reason: str) -> None:
    """A regulator halts every signed movement of a security (forced transfers still run)."""
    _set_paused(ctx, isin, True, reason)


@METHODS.method(isin=ASSET_ID, reason=TEXT)
def resume(ctx: Context, isin: str, reason: str) -> None:
    """A regulator lets a paused security move again."""
    _set_paused(ctx, isin, False, reason)
