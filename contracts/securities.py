"""Securities: instruments (equities and bonds) registered by issuers, issued, transferred, redeemed.

Part of contracts/. Every transfer rule of a security (pause, lock-up, eligibility, qualified
investors, maximum holders, freezes, free balance) lives in check_transfer, which the market,
offerings, corporate actions and settlement call before any security moves.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

# cash, compliance, securities and settlement call each other only inside functions, so their
# import cycle is harmless.
from contracts import balances, cash, compliance, participants, settlement
from contracts import isin as isin_codes
from contracts.base import (
    ADDRESS,
    AMOUNT,
    ASSET_ID,
    BOOL,
    HASH32,
    TEXT,
    UINT,
    ArgType,
    BuiltFromRecord,
    Context,
    MethodTable,
    list_of,
    one_of,
)
from ledger.reasons import ContractError, Reason
from ledger.state import state_key

NAME = "securities"
METHODS = MethodTable()
EQUITY = "equity"
BOND = "bond"
KINDS = (EQUITY, BOND)
SECURITY_DECIMALS = 0  # shares and bonds are whole units; a bond's value is in face_value_minor
MAX_COUPONS = 600  # 50 years of monthly coupons
MAX_COUPON_RATE_BPS = 100_000
MAX_URI_CHARS = 256
BOND_TERMS = ("face_value_minor", "currency", "coupon_rate_bps", "coupon_schedule_ms", "maturity_ms")

CURRENCY = ArgType("currency code", lambda v: isinstance(v, str) and len(v) == 3 and v.isascii() and v.isupper()
                   and v.isalpha())


@dataclass(frozen=True)
class Instrument:
    """A registered security. Bond terms are None (and the schedule empty) for an equity."""

    isin: str
    issuer: str
    name: str
    kind: str
    decimals: int
    authorised_supply: int
    qualified_only: bool
    max_holders: int | None
    lockup_until_ms: int
    face_value_minor: int | None
    currency: str | None
    coupon_rate_bps: int | None
    coupon_schedule_ms: tuple[int, ...]
    maturity_ms: int | None
    prospectus_hash: bytes
    prospectus_uri: str
    paused: bool
    registered_at_ms: int

    def to_state(self) -> dict[str, Any]:
        state = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "isin"}
        state["coupon_schedule_ms"] = list(self.coupon_schedule_ms)
        return state

    @classmethod
    def from_state(cls, isin: str, raw: dict[str, Any]) -> Instrument:
        fields = dict(raw)
        fields["coupon_schedule_ms"] = tuple(raw["coupon_schedule_ms"])
        return cls(isin=isin, **fields)


def instrument_key(isin: str) -> bytes:
    return state_key("instr", isin)


# Spares rebuilding an 18-field record several times per trade: built once per record bytes.
MAX_INSTRUMENTS_KEPT = 4_096
_INSTRUMENTS = BuiltFromRecord(MAX_INSTRUMENTS_KEPT, Instrument.from_state)


def get_instrument(ctx: Context, isin: str) -> Instrument | None:
    return _INSTRUMENTS.get(ctx, instrument_key(isin), isin)


def require_instrument(ctx: Context, isin: str) -> Instrument:
    found = get_instrument(ctx, isin)
    if found is None:
        raise ContractError(Reason.UNKNOWN_ASSET, f"no security {isin}")
    return found


def save_instrument(ctx: Context, instrument: Instrument) -> None:
    """Replace an instrument's record (a regulator's pause, or a split scaling the authorised supply)."""
    ctx.put(instrument_key(instrument.isin), instrument.to_state())
    ctx.touch(instrument.isin)


def record_unit_change(ctx: Context, isin: str) -> None:
    """What one unit of `isin` is has changed (a split or reverse split has completed:
    corporate_actions._finish_split): counted, so an offering priced per unit can tell that its
    unit is gone (offerings.py)."""
    ctx.put(_unit_changes_key(isin), unit_changes(ctx, isin) + 1)


def _unit_changes_key(isin: str) -> bytes:
    return state_key("unit_changes", isin)


def unit_changes(ctx: Context, isin: str) -> int:
    """How many times a corporate action has changed what one unit of `isin` is (splits done)."""
    return ctx.get(_unit_changes_key(isin)) or 0


def _redeemed_key(isin: str) -> bytes:
    return state_key("ca_redeemed", isin)


def record_bond_redeemed(ctx: Context, isin: str, action_id: int) -> None:
    """The bond's redemption at maturity has completed (corporate_actions._finish_redemption)."""
    ctx.put(_redeemed_key(isin), action_id)


def bond_redeemed(ctx: Context, isin: str) -> bool:
    """True once the bond's redemption at maturity has completed: nothing will redeem a unit
    issued after it, and nothing will release cash locked for it."""
    return ctx.exists(_redeemed_key(isin))


# ---------------------------------------------------------------- rules


def check_receiver(ctx: Context, instrument: Instrument, account: str, *, freed_slots: int = 0,
                   frozen: bool | None = None) -> None:
    """May `account` receive this security now? `freed_slots` = counted holders the same move
    removes (freed_slots_of); `frozen`: compliance.is_frozen(account, the security), if the
    caller has just asked it. The receiver needs the investor role even if it is the issuer:
    only a split's fractions reach an issuer's treasury without it (docs/CONTRACTS.md)."""
    found = participants.require_eligible(ctx, account, Reason.RECEIVER_NOT_ELIGIBLE, participants.INVESTOR)
    if instrument.qualified_only and not found.qualified:
        raise ContractError(Reason.QUALIFIED_ONLY, f"{instrument.isin} is for qualified investors only")
    if compliance.is_frozen(ctx, account, instrument.isin) if frozen is None else frozen:
        raise ContractError(Reason.ACCOUNT_FROZEN, f"receiver {account} is frozen for {instrument.isin}")
    if instrument.max_holders is not None:
        check_holder_room(ctx, instrument, account, freed_slots=freed_slots)


def counted_holders(ctx: Context, instrument: Instrument) -> int:
    """Holders of the security that its maximum counts: every non-zero balance but the issuer's.

    The issuer's own units (a split's fractions, docs/LIFECYCLE.md) are its treasury, not a
    holding: they count towards no maximum. balances.holder_count counts every non-zero balance.
    """
    return balances.holder_count_besides(ctx, instrument.isin, instrument.issuer)


def freed_slots_of(instrument: Instrument, source: str, source_total: int, quantity: int) -> int:
    """Counted holders a move of `quantity` from `source` (holding `source_total`) removes: 1 if
    it empties a holder, 0 if it leaves some, or if the source is the issuer (never counted)."""
    return 1 if source_total == quantity and source != instrument.issuer else 0


def check_holder_room(ctx: Context, instrument: Instrument, account: str, *, freed_slots: int = 0) -> None:
    """MAX_HOLDERS_REACHED if `account` would be a new counted holder past the maximum once the
    same move has removed `freed_slots` counted holders (see freed_slots_of)."""
    if instrument.max_holders is None or account == instrument.issuer:
        return
    if balances.get(ctx, instrument.isin, account).total == 0:
        after = counted_holders(ctx, instrument) + 1 - freed_slots
        if after > instrument.max_holders:
            raise ContractError(Reason.MAX_HOLDERS_REACHED,
                                f"{instrument.isin} is limited to {instrument.max_holders} holders")


def check_can_hold(ctx: Context, isin: str, account: str) -> None:
    """Eligibility of a receiver: an active investor, qualified if required, not frozen for this
    security, and room under the maximum number of holders if it would become a new holder."""
    check_receiver(ctx, require_instrument(ctx, isin), account)


def check_transfer(ctx: Context, isin: str, source: str, target: str, quantity: int, *,
                   from_locked: bool = False) -> Instrument:
    """Every rule of a transfer of this security, in the documented order; moves nothing."""
    instrument = require_instrument(ctx, isin)
    if not isinstance(quantity, int) or isinstance(quantity, bool) or quantity <= 0:
        raise ContractError(Reason.INVALID_AMOUNT, "a quantity is a positive integer")
    if source == target:
        raise ContractError(Reason.SELF_TRANSFER, "sender and receiver are the same account")
    if instrument.paused:
        raise ContractError(Reason.ASSET_PAUSED, f"{isin} is paused")
    if ctx.block.time_ms < instrument.lockup_until_ms:
        raise ContractError(Reason.LOCKED_UP, f"{isin} is locked up until {instrument.lockup_until_ms}")
    participants.require_eligible(ctx, source, Reason.SENDER_NOT_ELIGIBLE)
    source_freeze = compliance.check_not_frozen(ctx, source, isin)
    held = balances.get(ctx, isin, source)
    check_receiver(ctx, instrument, target, freed_slots=freed_slots_of(instrument, source, held.total, quantity))
    if from_locked:
        if held.locked < quantity:
            raise ContractError(Reason.INSUFFICIENT_LOCKED_BALANCE, f"{source} has {held.locked} locked {isin}")
    else:
        compliance.check_spendable(ctx, source, isin, quantity, source_freeze)
    return instrument


def transfer_checked(ctx: Context, isin: str, source: str, target: str, quantity: int, *,
                     from_locked: bool = False) -> None:
    """check_transfer, then move (from the source's locked part if from_locked)."""
    check_transfer(ctx, isin, source, target, quantity, from_locked=from_locked)
    if from_locked:
        balances.move_locked(ctx, isin, source, target, quantity)
    else:
        balances.move(ctx, isin, source, target, quantity)


def issue_to(ctx: Context, instrument: Instrument, to: str, quantity: int) -> None:
    """Create units for an eligible holder within the authorised supply (no signer check).

    Never for a redeemed bond (INVALID_STATE): its redemption has run, so nothing would ever
    redeem the new units (the authorised supply alone would allow them: outstanding is 0).
    """
    if instrument.kind == BOND and bond_redeemed(ctx, instrument.isin):
        raise ContractError(Reason.INVALID_STATE, f"{instrument.isin} is redeemed: no unit may be issued")
    issued, retired = balances.supply(ctx, instrument.isin)
    if issued - retired + quantity > instrument.authorised_supply:
        raise ContractError(Reason.SUPPLY_EXCEEDED,
                            f"{instrument.isin} outstanding would exceed {instrument.authorised_supply}")
    check_receiver(ctx, instrument, to)
    balances.issue(ctx, instrument.isin, to, quantity)


def _require_issuer(ctx: Context, instrument: Instrument, *also_signing: str) -> None:
    """The instrument's issuer, and every party named, signed (SIGNATURE_REQUIRED); then the issuer
    is active (UNAUTHORIZED): the documented order of issue's and redeem's codes."""
    ctx.require_signer(instrument.issuer)
    for party in also_signing:
        ctx.require_signer(party)
    participants.require_active(ctx, instrument.issuer, participants.ISSUER, Reason.UNAUTHORIZED)


# ---------------------------------------------------------------- registration


def _bond_terms(ctx: Context, kind: str, terms: dict[str, Any]) -> dict[str, Any]:
    """Validated bond terms (BAD_ARGUMENTS naming the rule), or all-None for an equity. The
    caller has checked that a named currency exists (UNKNOWN_ASSET comes before these codes)."""
    given = {k: v for k, v in terms.items() if v is not None}
    if kind == EQUITY:
        if given:
            raise ContractError(Reason.BAD_ARGUMENTS, f"an equity has no bond terms ({sorted(given)})")
        return {"face_value_minor": None, "currency": None, "coupon_rate_bps": None,
                "coupon_schedule_ms": (), "maturity_ms": None}
    missing = [k for k in BOND_TERMS if k not in given]
    if missing:
        raise ContractError(Reason.BAD_ARGUMENTS, f"a bond needs {missing}")
    schedule = tuple(terms["coupon_schedule_ms"])
    maturity = terms["maturity_ms"]
    if maturity <= ctx.block.time_ms:
        raise ContractError(Reason.BAD_ARGUMENTS, "maturity must be after the registration block")
    if any(b <= a for a, b in itertools.pairwise(schedule)):
        raise ContractError(Reason.BAD_ARGUMENTS, "coupon dates must strictly increase")
    if schedule and (schedule[0] <= ctx.block.time_ms or schedule[-1] > maturity):
        raise ContractError(Reason.BAD_ARGUMENTS, "coupon dates must lie after registration, up to maturity")
    if terms["coupon_rate_bps"] > MAX_COUPON_RATE_BPS:
        raise ContractError(Reason.BAD_ARGUMENTS, f"coupon rate above {MAX_COUPON_RATE_BPS} bps")
    return {**{k: terms[k] for k in BOND_TERMS}, "coupon_schedule_ms": schedule}


@METHODS.method(
    optional=("qualified_only", "max_holders", "lockup_until_ms") + BOND_TERMS,
    name=TEXT, kind=one_of(*KINDS), authorised_supply=AMOUNT, prospectus_hash=HASH32, prospectus_uri=TEXT,
    qualified_only=BOOL, max_holders=AMOUNT, lockup_until_ms=UINT, face_value_minor=AMOUNT, currency=CURRENCY,
    coupon_rate_bps=UINT, coupon_schedule_ms=list_of(AMOUNT, MAX_COUPONS), maturity_ms=AMOUNT,
)
def register(ctx: Context, name: str, kind: str, authorised_supply: int, prospectus_hash: bytes,
             prospectus_uri: str, qualified_only: bool = False, max_holders: int | None = None,
             lockup_until_ms: int = 0, face_value_minor: int | None = None, currency: str | None = None,
             coupon_rate_bps: int | None = None, coupon_schedule_ms: list[int] | None = None,
             maturity_ms: int | None = None) -> None:
    """An active issuer registers a security; the ledger assigns its ISIN (in the event).

    The issuer is the first signer that is an active issuer, wherever it is among the signers.
    Codes in the documented order: UNAUTHORIZED, UNKNOWN_ASSET (a named currency), BAD_ARGUMENTS.
    """
    issuer = participants.require_role_signer(ctx, participants.ISSUER)
    if currency is not None:
        cash.require_currency(ctx, currency)
    if not name:
        raise ContractError(Reason.BAD_ARGUMENTS, "a security has a name")
    terms = _bond_terms(ctx, kind, {
        "face_value_minor": face_value_minor, "currency": currency, "coupon_rate_bps": coupon_rate_bps,
        "coupon_schedule_ms": coupon_schedule_ms, "maturity_ms": maturity_ms,
    })
    instrument = Instrument(
        isin=isin_codes.next_isin(ctx), issuer=issuer, name=name, kind=kind, decimals=SECURITY_DECIMALS,
        authorised_supply=authorised_supply, qualified_only=qualified_only, max_holders=max_holders,
        lockup_until_ms=lockup_until_ms, prospectus_hash=prospectus_hash, prospectus_uri=prospectus_uri,
        paused=False, registered_at_ms=ctx.block.time_ms, **terms,
    )
    save_instrument(ctx, instrument)
    ctx.emit("security_registered", isin=instrument.isin, issuer=issuer, name=name, security_kind=kind,
             authorised_supply=authorised_supply)
    if kind == BOND:
        # A bond is serviced from its terms: nobody has to remember (or may withhold) service_bond.
        # Imported here because corporate_actions imports this module.
        from contracts import corporate_actions

        corporate_actions.schedule_bond_service(ctx, instrument.isin)


# ---------------------------------------------------------------- movements


@METHODS.method(isin=ASSET_ID, to=ADDRESS, quantity=AMOUNT)
def issue(ctx: Context, isin: str, to: str, quantity: int) -> None:
    """The issuer creates units for an eligible holder, up to the authorised supply outstanding."""
    instrument = require_instrument(ctx, isin)
    _require_issuer(ctx, instrument)
    if instrument.paused:
        raise ContractError(Reason.ASSET_PAUSED, f"{isin} is paused")
    issue_to(ctx, instrument, to, quantity)
    ctx.emit("security_issued", isin=isin, to=to, quantity=quantity)


@METHODS.method(optional=("currency", "amount"), isin=ASSET_ID, holder=ADDRESS, quantity=AMOUNT,
                currency=CURRENCY, amount=AMOUNT)
def redeem(ctx: Context, isin: str, holder: str, quantity: int, currency: str | None = None,
           amount: int | None = None) -> None:
    """Issuer and holder both sign: the holder's free units are retired, and if `currency` and
    `amount` are given the issuer pays the holder in the same transaction (both or neither)."""
    instrument = require_instrument(ctx, isin)
    _require_issuer(ctx, instrument, holder)
    if (currency is None) != (amount is None):
        raise ContractError(Reason.BAD_ARGUMENTS, "a redemption payment names both currency and amount")
    if instrument.paused:
        raise ContractError(Reason.ASSET_PAUSED, f"{isin} is paused")
    participants.require_eligible(ctx, holder, Reason.SENDER_NOT_ELIGIBLE)
    compliance.check_spendable(ctx, holder, isin, quantity)
    balances.retire(ctx, isin, holder, quantity)
    if currency is not None and amount is not None:
        settlement.settle_legs(ctx, [settlement.Leg(currency, instrument.issuer, holder, amount)])
    ctx.emit("security_redeemed", isin=isin, holder=holder, quantity=quantity, currency=currency, amount=amount)


@METHODS.method(isin=ASSET_ID, to=ADDRESS, quantity=AMOUNT)
def transfer(ctx: Context, isin: str, to: str, quantity: int) -> None:
    """A holder transfers free units to an eligible holder."""
    source = ctx.sender
    transfer_checked(ctx, isin, source, to, quantity)
    ctx.emit("security_transferred", isin=isin, source=source, to=to, quantity=quantity)
