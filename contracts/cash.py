"""Cash tokens: currencies minted by an authorised cash agent against off-ledger deposits.

Part of contracts/. An operator authorises one agent per currency; the agent mints against a
deposit reference and burns its own balance on withdrawal; holders transfer between themselves.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from contracts import balances, compliance, participants
from contracts.base import ADDRESS, AMOUNT, TEXT, UINT, ArgType, BuiltFromRecord, Context, MethodTable
from ledger.reasons import ContractError, Reason
from ledger.state import KEY_CACHE_ENTRIES, state_key

NAME = "cash"
METHODS = MethodTable()
MAX_CURRENCY_DECIMALS = 8
CASH_AGENT = "cash_agent"

CURRENCY_CODE = ArgType("currency code (3 uppercase letters)",
                        lambda v: isinstance(v, str) and len(v) == 3 and v.isascii() and v.isalpha() and v.isupper())


@dataclass(frozen=True)
class Currency:
    code: str
    decimals: int
    agent: str


@functools.lru_cache(maxsize=KEY_CACHE_ENTRIES)
def currency_key(code: str) -> bytes:
    return state_key("currency", code)


# Every payment reads its currency: built once per record bytes.
MAX_CURRENCIES_KEPT = 1024
_CURRENCIES = BuiltFromRecord(MAX_CURRENCIES_KEPT, lambda code, raw: Currency(code, raw["decimals"], raw["agent"]))


def get_currency(ctx: Context, code: str) -> Currency | None:
    return _CURRENCIES.get(ctx, currency_key(code), code)


def require_currency(ctx: Context, code: str) -> Currency:
    found = get_currency(ctx, code)
    if found is None:
        raise ContractError(Reason.UNKNOWN_ASSET, f"no currency {code}")
    return found


def _register(ctx: Context, code: str, decimals: int, agent: str) -> None:
    """Codes in the documented order: UNAUTHORIZED (agent), ALREADY_EXISTS, BAD_ARGUMENTS."""
    participants.require_active(ctx, agent, CASH_AGENT, Reason.UNAUTHORIZED)
    if get_currency(ctx, code) is not None:
        raise ContractError(Reason.ALREADY_EXISTS, f"currency {code} exists")
    if not 0 <= decimals <= MAX_CURRENCY_DECIMALS:
        raise ContractError(Reason.BAD_ARGUMENTS, f"decimals must be 0..{MAX_CURRENCY_DECIMALS}")
    ctx.put(currency_key(code), {"decimals": decimals, "agent": agent})
    ctx.touch(code)
    ctx.emit("currency_registered", currency=code, decimals=decimals, agent=agent)


def genesis(ctx: Context, app_state: dict[str, Any]) -> None:
    for entry in app_state.get("currencies", []):
        _register(ctx, entry["code"], entry["decimals"], entry["agent"])


@METHODS.method(currency=CURRENCY_CODE, decimals=UINT, agent=ADDRESS)
def register_currency(ctx: Context, currency: str, decimals: int, agent: str) -> None:
    """An operator authorises a cash agent (a bank) to issue a currency."""
    participants.require_operator(ctx)
    _register(ctx, currency, decimals, agent)


@METHODS.method(currency=CURRENCY_CODE, to=ADDRESS, amount=AMOUNT, deposit_ref=TEXT)
def mint(ctx: Context, currency: str, to: str, amount: int, deposit_ref: str) -> None:
    """The currency's agent mints against an off-ledger deposit, to an eligible holder."""
    found = require_currency(ctx, currency)
    if found.agent not in ctx.signers:  # any signer: the agent need not sign first
        raise ContractError(Reason.UNAUTHORIZED, f"only {found.agent} mints {currency}")
    participants.require_active(ctx, found.agent, CASH_AGENT, Reason.UNAUTHORIZED)
    participants.require_eligible(ctx, to, Reason.RECEIVER_NOT_ELIGIBLE)
    compliance.check_not_frozen(ctx, to, currency)
    balances.issue(ctx, currency, to, amount)
    ctx.emit("cash_minted", currency=currency, to=to, amount=amount, deposit_ref=deposit_ref)


@METHODS.method(currency=CURRENCY_CODE, amount=AMOUNT, withdrawal_ref=TEXT)
def burn(ctx: Context, currency: str, amount: int, withdrawal_ref: str) -> None:
    """The agent burns cash it holds when paying it out off-ledger."""
    found = require_currency(ctx, currency)
    if found.agent not in ctx.signers:  # any signer: the agent need not sign first
        raise ContractError(Reason.UNAUTHORIZED, f"only {found.agent} burns {currency}")
    participants.require_active(ctx, found.agent, CASH_AGENT, Reason.UNAUTHORIZED)
    compliance.check_spendable(ctx, found.agent, currency, amount)
    balances.retire(ctx, currency, found.agent, amount)
    ctx.emit("cash_burned", currency=currency, amount=amount, withdrawal_ref=withdrawal_ref)


def check_transfer(ctx: Context, currency: str, source: str, target: str, amount: int, *,
                   from_locked: bool = False) -> None:
    """Every rule of a cash payment, in the documented order; moves nothing."""
    _check_transfer(ctx, currency, source, target, amount, from_locked)


def _check_transfer(ctx: Context, currency: str, source: str, target: str, amount: int,
                    from_locked: bool) -> balances.Balance:
    """check_transfer, returning the source's balance it read (for the move that follows)."""
    if _CURRENCIES.get(ctx, currency_key(currency), currency) is None:  # require_currency, inlined
        raise ContractError(Reason.UNKNOWN_ASSET, f"no currency {currency}")
    if (type(amount) is not int and (not isinstance(amount, int) or isinstance(amount, bool))) or amount <= 0:
        raise ContractError(Reason.INVALID_AMOUNT, "an amount is a positive integer")
    if source == target:
        raise ContractError(Reason.SELF_TRANSFER, "sender and receiver are the same account")
    participants.require_eligible(ctx, source, Reason.SENDER_NOT_ELIGIBLE)
    # compliance.check_not_frozen for each side, its call spared unless frozen (it names why)
    source_freeze = compliance.freeze_state(ctx, source, currency)
    if source_freeze.frozen:
        compliance.check_not_frozen(ctx, source, currency)
    participants.require_eligible(ctx, target, Reason.RECEIVER_NOT_ELIGIBLE)
    if compliance.freeze_state(ctx, target, currency).frozen:
        compliance.check_not_frozen(ctx, target, currency)
    if from_locked:
        held = balances.get(ctx, currency, source)
        if held.locked < amount:
            raise ContractError(Reason.INSUFFICIENT_LOCKED_BALANCE, f"{source} has {held.locked} locked {currency}")
        return held
    return compliance.check_spendable(ctx, source, currency, amount, source_freeze)


def transfer_checked(ctx: Context, currency: str, source: str, target: str, amount: int, *,
                     from_locked: bool = False) -> None:
    """check_transfer, then move (from the source's locked part if from_locked)."""
    held = _check_transfer(ctx, currency, source, target, amount, from_locked)
    if from_locked:
        balances.move_locked(ctx, currency, source, target, amount, source_balance=held)
    else:
        balances.move(ctx, currency, source, target, amount, source_balance=held)


@METHODS.method(currency=CURRENCY_CODE, to=ADDRESS, amount=AMOUNT)
def transfer(ctx: Context, currency: str, to: str, amount: int) -> None:
    """A holder pays another admitted participant."""
    signers = ctx.signers
    sender = signers[0] if signers else ctx.sender  # the property's call only to refuse
    held = _check_transfer(ctx, currency, sender, to, amount, False)  # transfer_checked, one call less
    balances.move(ctx, currency, sender, to, amount, source_balance=held)
    # Attributes in key order: the receipt packs them as they are (codec.is_leaf_map_sorted).
    ctx.emit("cash_transferred", amount=amount, currency=currency, source=sender, to=to)
