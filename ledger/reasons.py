"""Stable reason codes: why a transaction was refused at the door or failed in a block.

Part of ledger/. One enum for the whole system: contracts raise these, receipts store them,
the HTTP API returns them and docs/REASON_CODES.md lists them. Never rename a member; add.
"""

from __future__ import annotations

import enum


class Reason(enum.StrEnum):
    OK = "OK"
    # --- admission: the transaction is refused before ordering and never reaches a block
    MALFORMED = "MALFORMED"
    NON_CANONICAL = "NON_CANONICAL"
    TOO_LARGE = "TOO_LARGE"
    UNSUPPORTED_VERSION = "UNSUPPORTED_VERSION"
    WRONG_CHAIN = "WRONG_CHAIN"
    MISSING_SIGNATURE = "MISSING_SIGNATURE"
    BAD_SIGNATURE = "BAD_SIGNATURE"
    DUPLICATE_SIGNER = "DUPLICATE_SIGNER"
    EXPIRED = "EXPIRED"
    EXPIRY_TOO_FAR = "EXPIRY_TOO_FAR"
    DUPLICATE = "DUPLICATE"
    UNKNOWN_CONTRACT = "UNKNOWN_CONTRACT"
    UNKNOWN_METHOD = "UNKNOWN_METHOD"
    BAD_ARGUMENTS = "BAD_ARGUMENTS"
    # --- execution: the transaction is in the block, marked invalid, and changed nothing
    KEY_REVOKED = "KEY_REVOKED"
    UNAUTHORIZED = "UNAUTHORIZED"
    NOT_A_PARTICIPANT = "NOT_A_PARTICIPANT"
    ALREADY_EXISTS = "ALREADY_EXISTS"
    NOT_FOUND = "NOT_FOUND"
    INVALID_STATE = "INVALID_STATE"
    INVALID_AMOUNT = "INVALID_AMOUNT"
    UNKNOWN_ASSET = "UNKNOWN_ASSET"
    INSUFFICIENT_FREE_BALANCE = "INSUFFICIENT_FREE_BALANCE"
    INSUFFICIENT_LOCKED_BALANCE = "INSUFFICIENT_LOCKED_BALANCE"
    SUPPLY_EXCEEDED = "SUPPLY_EXCEEDED"
    SENDER_NOT_ELIGIBLE = "SENDER_NOT_ELIGIBLE"
    RECEIVER_NOT_ELIGIBLE = "RECEIVER_NOT_ELIGIBLE"
    PARTICIPANT_SUSPENDED = "PARTICIPANT_SUSPENDED"
    ACCOUNT_FROZEN = "ACCOUNT_FROZEN"
    ASSET_PAUSED = "ASSET_PAUSED"
    LOCKED_UP = "LOCKED_UP"
    QUALIFIED_ONLY = "QUALIFIED_ONLY"
    MAX_HOLDERS_REACHED = "MAX_HOLDERS_REACHED"
    SIGNATURE_REQUIRED = "SIGNATURE_REQUIRED"
    SELF_TRANSFER = "SELF_TRANSFER"
    LIMIT_EXCEEDED = "LIMIT_EXCEEDED"
    TRADING_HALTED = "TRADING_HALTED"
    OFF_TICK = "OFF_TICK"


class ContractError(Exception):
    """A refused operation: an expected outcome with a stable code, never a bug of ours."""

    def __init__(self, reason: Reason, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else str(reason))
        self.reason = reason
        self.detail = detail


class TxRejected(Exception):
    """A transaction refused at the door (decoding, signatures, replay): never ordered."""

    def __init__(self, reason: Reason, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else str(reason))
        self.reason = reason
        self.detail = detail


class InvariantViolation(RuntimeError):
    """A bug of ours: a rule the ledger must never break was broken. Stops loudly."""


def require(condition: bool, message: str) -> None:
    """An invariant check that, unlike assert, also holds under python -O."""
    if not condition:
        raise InvariantViolation(message)
