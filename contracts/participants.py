"""Participants and roles: who may act on the ledger, admitted by the network's operators.

Part of contracts/. Genesis names the operators; an operator admits issuers, investors, cash
agents and regulators with a hash of their off-ledger KYC record, suspends and reinstates them,
and (with a regulator's co-signature) re-binds a participant's account to a new key.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from contracts.base import (
    ADDRESS,
    BOOL,
    BYTES32,
    HASH32,
    TEXT,
    BuiltFromRecord,
    Context,
    MethodTable,
    list_of,
    map_of,
    one_of,
)
from ledger import auth
from ledger.keys import address_of, is_address, is_public_key
from ledger.reasons import ContractError, Reason
from ledger.state import KEY_CACHE_ENTRIES, prefix_of, state_key

NAME = "participants"
METHODS = MethodTable()

ROLES = ("issuer", "investor", "cash_agent", "regulator")
ISSUER = "issuer"
INVESTOR = "investor"
REGULATOR = "regulator"
ACTIVE = "active"
SUSPENDED = "suspended"
MAX_RECOVERIES_LISTED = 1000

# Every legal change of a participant's status; a pair not here is refused with INVALID_STATE.
STATUS_TRANSITIONS: dict[tuple[str, str], str] = {
    (ACTIVE, "suspend"): SUSPENDED,
    (SUSPENDED, "reinstate"): ACTIVE,
}


@dataclass(frozen=True)
class Participant:
    address: str
    name: str
    roles: tuple[str, ...]
    status: str
    kyc_hash: bytes
    qualified: bool

    def has_role(self, role: str) -> bool:
        return role in self.roles

    @property
    def active(self) -> bool:
        return self.status == ACTIVE

    def to_state(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "roles": list(self.roles),
            "status": self.status,
            "kyc_hash": self.kyc_hash,
            "qualified": self.qualified,
        }


@functools.lru_cache(maxsize=KEY_CACHE_ENTRIES)
def participant_key(address: str) -> bytes:
    return state_key("part", address)


def operator_key(address: str) -> bytes:
    return state_key("operator", address)


# A transfer asks about the same two participants several times: built once per record bytes.
MAX_PARTICIPANTS_KEPT = 16_384
_PARTICIPANTS = BuiltFromRecord(
    MAX_PARTICIPANTS_KEPT,
    lambda address, raw: Participant(address, raw["name"], tuple(raw["roles"]), raw["status"], raw["kyc_hash"],
                                     raw["qualified"]),
)


def get(ctx: Context, address: str) -> Participant | None:
    return _PARTICIPANTS.get(ctx, participant_key(address), address)


def save(ctx: Context, participant: Participant) -> None:
    ctx.put(participant_key(participant.address), participant.to_state())
    ctx.touch(participant.address)


def is_operator(ctx: Context, address: str) -> bool:
    return ctx.exists(operator_key(address))


def require_operator(ctx: Context) -> str:
    """The signing operator; UNAUTHORIZED unless an operator signed."""
    for signer in ctx.signers:
        if is_operator(ctx, signer):
            return signer
    raise ContractError(Reason.UNAUTHORIZED, "an operator must sign")


def require_active(ctx: Context, address: str, role: str | None = None,
                   reason: Reason = Reason.NOT_A_PARTICIPANT) -> Participant:
    """An admitted, active participant (with the role, if named); else `reason`, with why."""
    found = get(ctx, address)
    if found is None:
        raise ContractError(reason, f"{address} is not an admitted participant")
    if not found.active:
        raise ContractError(reason, f"{address} is suspended")
    if role is not None and not found.has_role(role):
        raise ContractError(reason, f"{address} does not hold the {role} role")
    return found


def require_eligible(ctx: Context, address: str, reason: Reason, role: str | None = None) -> Participant:
    """A participant that may send or receive assets now.

    `reason` (SENDER_NOT_ELIGIBLE or RECEIVER_NOT_ELIGIBLE) if it was never admitted or lacks
    `role` (if named); then PARTICIPANT_SUSPENDED if it is suspended, whichever side it is on (the
    detail says which). That order is docs/CONTRACTS.md's: a receiver that may never hold the
    asset is told so before it is told it is suspended.
    """
    found = _PARTICIPANTS.get(ctx, participant_key(address), address)  # get(), one call less
    if found is None:
        side = "sender" if reason == Reason.SENDER_NOT_ELIGIBLE else "receiver"
        raise ContractError(reason, f"{side} {address} is not an admitted participant")
    if role is not None and role not in found.roles:
        side = "sender" if reason == Reason.SENDER_NOT_ELIGIBLE else "receiver"
        raise ContractError(reason, f"{side} {address} does not hold the {role} role")
    if found.status != ACTIVE:  # found.active, without a property call: twice per transfer
        side = "sender" if reason == Reason.SENDER_NOT_ELIGIBLE else "receiver"
        raise ContractError(Reason.PARTICIPANT_SUSPENDED, f"{side} {address} is suspended")
    return found


def require_role_signer(ctx: Context, role: str) -> str:
    """The first signer that is an active participant with the role; else UNAUTHORIZED."""
    for signer in ctx.signers:
        found = get(ctx, signer)
        if found is not None and found.active and found.has_role(role):
            return signer
    raise ContractError(Reason.UNAUTHORIZED, f"an active {role} must sign")


def _roles(roles: list[str]) -> tuple[str, ...]:
    if not roles or len(set(roles)) != len(roles):
        raise ContractError(Reason.BAD_ARGUMENTS, "roles must be a non-empty list without repeats")
    return tuple(sorted(roles))


def genesis(ctx: Context, app_state: dict[str, Any]) -> None:
    """Operators and any participants named in the network's genesis."""
    for address in app_state.get("operators", []):
        if not is_address(address):
            raise ValueError(f"genesis operator {address!r} is not an address")
        ctx.put(operator_key(address), 1)
        ctx.touch(address)
        # One event per subject, so each one's history starts at genesis (block 0).
        ctx.emit("operator_named", address=address)
    admitted = app_state.get("participants", [])
    for entry in admitted:
        if not is_address(entry.get("address")):
            raise ValueError(f"genesis participant {entry.get('address')!r} is not an address")
        kyc = bytes.fromhex(entry.get("kyc_hash", "00" * 32))
        participant = Participant(entry["address"], entry.get("name", ""), _roles(entry["roles"]), ACTIVE, kyc,
                                  bool(entry.get("qualified", False)))
        save(ctx, participant)  # touches it: its history lists the one event below, at block 0
    if admitted:
        # One event for all: one per participant would pass MAX_EVENTS_PER_TX (and the block's
        # decodable event count) for a network that starts with more than 10,000 of them.
        ctx.emit("participants_admitted", count=len(admitted), by="genesis")


@METHODS.method(optional=("qualified",), address=ADDRESS, name=TEXT,
                roles=list_of(one_of(*ROLES), len(ROLES)), kyc_hash=HASH32, qualified=BOOL)
def admit(ctx: Context, address: str, name: str, roles: list[str], kyc_hash: bytes, qualified: bool = False) -> None:
    """An operator admits a participant with roles and the hash of its KYC record."""
    operator = require_operator(ctx)
    if get(ctx, address) is not None:
        raise ContractError(Reason.ALREADY_EXISTS, f"{address} is already a participant")
    if ctx.exists(key_taken_key(address)):
        raise ContractError(Reason.ALREADY_EXISTS, f"the key of {address} was re-bound to another account")
    save(ctx, Participant(address, name, _roles(roles), ACTIVE, kyc_hash, qualified))
    ctx.emit("participant_admitted", address=address, roles=sorted(roles), by=operator)


def _transition(ctx: Context, address: str, action: str) -> Participant:
    found = get(ctx, address)
    if found is None:
        raise ContractError(Reason.NOT_FOUND, f"{address} is not a participant")
    new_status = STATUS_TRANSITIONS.get((found.status, action))
    if new_status is None:
        raise ContractError(Reason.INVALID_STATE, f"cannot {action} a participant that is {found.status}")
    updated = Participant(found.address, found.name, found.roles, new_status, found.kyc_hash, found.qualified)
    save(ctx, updated)
    return updated


@METHODS.method(address=ADDRESS, reason=TEXT)
def suspend(ctx: Context, address: str, reason: str) -> None:
    """An operator suspends a participant: it keeps its holdings but can neither send nor receive."""
    operator = require_operator(ctx)
    _transition(ctx, address, "suspend")
    ctx.emit("participant_suspended", address=address, reason=reason, by=operator)


@METHODS.method(address=ADDRESS, reason=TEXT)
def reinstate(ctx: Context, address: str, reason: str) -> None:
    """An operator lifts a suspension."""
    operator = require_operator(ctx)
    _transition(ctx, address, "reinstate")
    ctx.emit("participant_reinstated", address=address, reason=reason, by=operator)


@METHODS.method(optional=("roles", "kyc_hash", "qualified"), address=ADDRESS,
                roles=list_of(one_of(*ROLES), len(ROLES)), kyc_hash=HASH32, qualified=BOOL)
def update(ctx: Context, address: str, roles: list[str] | None = None, kyc_hash: bytes | None = None,
           qualified: bool | None = None) -> None:
    """An operator changes roles, KYC hash or qualified-investor status (holdings never move)."""
    operator = require_operator(ctx)
    found = get(ctx, address)
    if found is None:
        raise ContractError(Reason.NOT_FOUND, f"{address} is not a participant")
    updated = Participant(
        address, found.name,
        found.roles if roles is None else _roles(roles),
        found.status,
        found.kyc_hash if kyc_hash is None else kyc_hash,
        found.qualified if qualified is None else qualified,
    )
    save(ctx, updated)
    ctx.emit("participant_updated", address=address, roles=list(updated.roles), qualified=updated.qualified,
             by=operator)


# ---------------------------------------------------------------- lost-key recovery


def key_taken_key(address: str) -> bytes:
    return state_key("key_taken", address)


def recovery_key(address: str, sequence: int) -> bytes:
    return state_key("recovery", address, sequence)


def recovery_count_key(address: str) -> bytes:
    return state_key("recovery_count", address)


@dataclass(frozen=True)
class Recovery:
    """One re-binding of an account to a new key, kept forever in the state."""

    address: str
    sequence: int
    old_key: bytes | None  # None: the account still used the key it was derived from
    new_key: bytes
    operator: str
    regulator: str
    reason: str
    height: int
    time_ms: int


def recoveries(ctx: Context, address: str) -> list[Recovery]:
    """Every recovery of an account, oldest first."""
    out = []
    for _, raw in ctx.scan(prefix_of("recovery", address), MAX_RECOVERIES_LISTED):
        out.append(Recovery(address, raw["sequence"], raw["old_key"], raw["new_key"], raw["operator"],
                            raw["regulator"], raw["reason"], raw["height"], raw["time_ms"]))
    return out


def _key_in_use(ctx: Context, address: str, new_key: bytes) -> str | None:
    """Why new_key may not take over `address`, or None if it may.

    A key bound to `address` itself by an earlier recovery (its original key after a restore, or
    a key it used before) is not in use by another account, so the account may be given it back.
    """
    bound_to = ctx.state.get(auth.key_binding_key(new_key))
    if bound_to is not None and bound_to != address.encode("ascii"):
        return "the new key is already bound to another account"
    own = address_of(new_key)
    if own == address:
        return None  # giving the account back the key it was derived from
    if get(ctx, own) is not None or is_operator(ctx, own):
        return "the new key already controls another participant"
    if next(ctx.scan(prefix_of("holding", own), 1), None) is not None:
        return "the new key's own account holds assets"
    return None


def bind_key(ctx: Context, address: str, new_key: bytes) -> None:
    """Write the auth bindings ledger/auth.py reads: new_key signs for address, any older key is refused.

    The values are raw bytes, not codec-encoded, because auth.resolve_signer reads them raw.
    """
    ctx.state.put(auth.account_key_key(address), new_key)
    ctx.state.put(auth.key_binding_key(new_key), address.encode("ascii"))
    own = address_of(new_key)
    if own != address:
        # The key's own address can never sign for itself now; admit refuses it.
        ctx.put(key_taken_key(own), address)


@METHODS.method(address=ADDRESS, new_public_key=BYTES32, reason=TEXT)
def recover_key(ctx: Context, address: str, new_public_key: bytes, reason: str) -> None:
    """An operator, co-signed by a regulator, re-binds a participant's account to a new key.

    The holdings stay at the same address; from this block the old key is refused (KEY_REVOKED)
    and the new key signs for the address. Each recovery is recorded and emitted.
    """
    operator, regulator = _operator_and_regulator(ctx)
    if get(ctx, address) is None:
        raise ContractError(Reason.NOT_FOUND, f"{address} is not a participant")
    if not reason:
        raise ContractError(Reason.BAD_ARGUMENTS, "a recovery states its reason")
    if not is_public_key(new_public_key):  # it could never sign: the account would be locked
        raise ContractError(Reason.BAD_ARGUMENTS, "new_public_key is not an Ed25519 public key (mistyped?)")
    old_key = auth.current_key(ctx.state, address)
    still_original = old_key is None and address_of(new_public_key) == address
    if old_key == new_public_key or still_original:
        raise ContractError(Reason.INVALID_STATE, "the account already uses this key")
    problem = _key_in_use(ctx, address, new_public_key)
    if problem is not None:
        raise ContractError(Reason.ALREADY_EXISTS, problem)
    bind_key(ctx, address, new_public_key)
    sequence = (ctx.get(recovery_count_key(address)) or 0) + 1
    ctx.put(recovery_count_key(address), sequence)
    ctx.put(recovery_key(address, sequence), {
        "sequence": sequence, "old_key": old_key, "new_key": new_public_key, "operator": operator,
        "regulator": regulator, "reason": reason, "height": ctx.block.height, "time_ms": ctx.block.time_ms,
    })
    ctx.touch(address)
    ctx.emit("key_recovered", address=address, sequence=sequence, new_key=new_public_key, by=operator,
             regulator=regulator, reason=reason)


def _operator_and_regulator(ctx: Context) -> tuple[str, str]:
    """A signing operator and a different signing active regulator: one party alone cannot take
    an account. Any such pair among the signers will do, whatever their order (an operator that
    is also a regulator may be either side); the first pair in signer order is the one recorded.
    UNAUTHORIZED if no operator signed, else SIGNATURE_REQUIRED if no pair exists.
    """
    operators = [signer for signer in ctx.signers if is_operator(ctx, signer)]
    if not operators:
        raise ContractError(Reason.UNAUTHORIZED, "an operator must sign")
    regulators = [signer for signer in ctx.signers if _is_active_regulator(ctx, signer)]
    for operator in operators:
        for regulator in regulators:
            if regulator != operator:
                return operator, regulator
    raise ContractError(Reason.SIGNATURE_REQUIRED, "a regulator other than the operator must co-sign")


def _is_active_regulator(ctx: Context, address: str) -> bool:
    found = get(ctx, address)
    return found is not None and found.active and found.has_role(REGULATOR)


# ---------------------------------------------------------------- admission in bulk

# Accounts one admit_many may admit: 256 entries of ~110 encoded bytes stay well under the
# ledger's 64 KiB transaction bound, and one transaction replaces 256 (a million-account network
# is seeded with ~3,900 admission transactions instead of 1,000,000).
MAX_ADMITS_PER_TX = 256
ADMISSION = map_of({"address": ADDRESS, "name": TEXT, "roles": list_of(one_of(*ROLES), len(ROLES)),
                    "kyc_hash": HASH32, "qualified": BOOL}, optional=frozenset({"qualified"}))


@METHODS.method(accounts=list_of(ADMISSION, MAX_ADMITS_PER_TX))
def admit_many(ctx: Context, accounts: list[dict[str, Any]]) -> None:
    """An operator admits up to MAX_ADMITS_PER_TX participants: all of them or none.

    Each entry goes through `admit` itself, in list order, so the checks, state writes and the
    one `participant_admitted` event per account are exactly those of one admit per account; a
    refusal keeps admit's reason code and names the entry (`account <i>: `, 0-based), and the
    executor rolls the whole transaction back.
    """
    require_operator(ctx)
    if not accounts:
        raise ContractError(Reason.BAD_ARGUMENTS, "accounts must not be empty")
    for position, entry in enumerate(accounts):
        try:
            admit(ctx, **entry)
        except ContractError as exc:
            raise ContractError(exc.reason, f"account {position}: {exc.detail}") from exc
