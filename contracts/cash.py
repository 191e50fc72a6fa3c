"""Cash tokens: currencies minted by an authorised cash agent against off-ledger deposits.

Part of contracts/. An operator authorises one agent per currency; the agent mints against a
deposit reference and burns its own balance on withdrawal; holders transfer between themselves.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from contracts import balances, participants
from contracts.base import ADDRESS, AMOUNT, ArgType, TEXT, UINT, Context, MethodTable
from ledger.reasons import ContractError, Reason
from ledger.state import state_key

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


def currency_key(code: str) -> bytes:
    return state_key("currency", code)


def get_currency(ctx: Context, code: str) -> Currency | None:
    raw = ctx.get(currency_key(code))
    return None if raw is None else Currency(code, raw["decimals"], raw["agent"])


def require_currency(ctx: Context, code: str) -> Currency:
    found = get_currency(ctx, code)
    if found is None:
        raise ContractError(Reason.UNKNOWN_ASSET, f"no currency {code}")
    return found


def _register(ctx: Context, code: str, decimals: int, agent: str) -> None:
    if get_currency(ctx, code) is not None:
        raise ContractError(Reason.ALREADY_EXISTS, f"currency {code} exists")
    if not 0 <= decimals <= MAX_CURRENCY_DECIMALS:
        raise ContractError(Reason.BAD_ARGUMENTS, f"decimals must be 0..{MAX_CURRENCY_DECIMALS}")
    participants.require_active(ctx, agent, CASH_AGENT, Reason.UNAUTHORIZED)
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
    if ctx.sender != found.agent:
        raise ContractError(Reason.UNAUTHORIZED, f"only {found.agent} mints {currency}")
    participants.require_active(ctx, found.agent, CASH_AGENT, Reason.UNAUTHORIZED)
    participants.require_active(ctx, to, None, Reason.RECEIVER_NOT_ELIGIBLE)
    balances.issue(ctx, currency, to, amount)
    ctx.emit("cash_minted", currency=currency, to=to, amount=amount, deposit_ref=deposit_ref)


@METHODS.method(currency=CURRENCY_CODE, amount=AMOUNT, withdrawal_ref=TEXT)
def burn(ctx: Context, currency: str, amount: int, withdrawal_ref: str) -> None:
    """The agent burns cash it holds when paying it out off-ledger."""
    found = require_currency(ctx, currency)
    if ctx.sender != found.agent:
        raise ContractError(Reason.UNAUTHORIZED, f"only {found.agent} burns {currency}")
    balances.retire(ctx, currency, found.agent, amount)
    ctx.emit("cash_burned", currency=currency, amount=amount, withdrawal_ref=withdrawal_ref)


@METHODS.method(currency=CURRENCY_CODE, to=ADDRESS, amount=AMOUNT)
def transfer(ctx: Context, currency: str, to: str, amount: int) -> None:
    """A holder pays another admitted participant."""
    require_currency(ctx, currency)
    sender = ctx.sender
    if to == sender:
        raise ContractError(Reason.SELF_TRANSFER, "sender and receiver are the same account")
    participants.require_active(ctx, sender, None, Reason.SENDER_NOT_ELIGIBLE)
    participants.require_active(ctx, to, None, Reason.RECEIVER_NOT_ELIGIBLE)
    balances.move(ctx, currency, sender, to, amount)
    ctx.emit("cash_transferred", currency=currency, source=sender, to=to, amount=amount)
