"""Participants and roles: who may act on the ledger, admitted by the network's operators.

Part of contracts/. Genesis names the operators; an operator admits issuers, investors, cash
agents and regulators with a hash of their off-ledger KYC record.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from contracts.base import ADDRESS, BOOL, HASH32, TEXT, Context, MethodTable, list_of, one_of
from ledger.keys import is_address
from ledger.reasons import ContractError, Reason
from ledger.state import state_key

NAME = "participants"
METHODS = MethodTable()

ROLES = ("issuer", "investor", "cash_agent", "regulator")
ACTIVE = "active"
SUSPENDED = "suspended"


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


def participant_key(address: str) -> bytes:
    return state_key("part", address)


def operator_key(address: str) -> bytes:
    return state_key("operator", address)


def get(ctx: Context, address: str) -> Participant | None:
    raw = ctx.get(participant_key(address))
    if raw is None:
        return None
    return Participant(address, raw["name"], tuple(raw["roles"]), raw["status"], raw["kyc_hash"], raw["qualified"])


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
    for entry in app_state.get("participants", []):
        kyc = bytes.fromhex(entry.get("kyc_hash", "00" * 32))
        participant = Participant(entry["address"], entry.get("name", ""), _roles(entry["roles"]), ACTIVE, kyc,
                                  bool(entry.get("qualified", False)))
        save(ctx, participant)


@METHODS.method(optional=("qualified",), address=ADDRESS, name=TEXT,
                roles=list_of(one_of(*ROLES), len(ROLES)), kyc_hash=HASH32, qualified=BOOL)
def admit(ctx: Context, address: str, name: str, roles: list[str], kyc_hash: bytes, qualified: bool = False) -> None:
    """An operator admits a participant with roles and the hash of its KYC record."""
    operator = require_operator(ctx)
    if get(ctx, address) is not None:
        raise ContractError(Reason.ALREADY_EXISTS, f"{address} is already a participant")
    save(ctx, Participant(address, name, _roles(roles), ACTIVE, kyc_hash, qualified))
    ctx.emit("participant_admitted", address=address, roles=sorted(roles), by=operator)
