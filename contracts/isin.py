"""ISIN identifiers the ledger assigns itself: MX + nine alphanumerics + ISO 6166 check digit.

Part of contracts/. securities.register calls next_isin; the result depends only on the chain id
and a counter in the state, so every node assigns the same ISIN and no depository is needed.
"""

from __future__ import annotations

import hashlib

from contracts.base import Context
from ledger.reasons import require
from ledger.state import state_key

COUNTRY_PREFIX = "MX"
NSIN_CHARS = 9
ISIN_CHARS = 12
ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
MAX_ASSIGN_ATTEMPTS = 64
ISIN_DOMAIN = b"keiretsu/isin/v1\x00"


def counter_key() -> bytes:
    return state_key("isin", "counter")


def assigned_key(isin: str) -> bytes:
    return state_key("isin", "assigned", isin)


def check_digit(body: str) -> str:
    """The ISO 6166 check digit of the first eleven characters (letters count as 10..35, then Luhn)."""
    if len(body) != ISIN_CHARS - 1 or not all(ch in ALPHABET for ch in body):
        raise ValueError("an ISIN body is 11 uppercase alphanumerics")
    digits = "".join(str(ALPHABET.index(ch)) for ch in body)
    total = 0
    # The check digit will sit to the right, so the rightmost digit of the body is doubled.
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2 == 0:
            value *= 2
            value = value - 9 if value > 9 else value
        total += value
    return str((10 - total % 10) % 10)


def is_valid(text: object) -> bool:
    """Well-formed ISIN of any country with a correct check digit."""
    if not isinstance(text, str) or len(text) != ISIN_CHARS:
        return False
    if not text[:2].isalpha() or not all(ch in ALPHABET for ch in text):
        return False
    return check_digit(text[:-1]) == text[-1]


def _nsin(chain_id: str, counter: int) -> str:
    """Nine base-36 characters from a hash, so ISINs differ between networks and look unordered."""
    digest = hashlib.sha256(ISIN_DOMAIN + chain_id.encode("utf-8") + counter.to_bytes(8, "big")).digest()
    number = int.from_bytes(digest[:8], "big") % (len(ALPHABET) ** NSIN_CHARS)
    chars = []
    for _ in range(NSIN_CHARS):
        number, digit = divmod(number, len(ALPHABET))
        chars.append(ALPHABET[digit])
    return "".join(reversed(chars))


def next_isin(ctx: Context) -> str:
    """Assign a fresh ISIN: deterministic from the chain id and the state, never reused.

    A hash collision with an assigned ISIN (about one in 10^14 per draw) moves the counter on.
    """
    counter = ctx.get(counter_key()) or 0
    for _ in range(MAX_ASSIGN_ATTEMPTS):
        counter += 1
        body = COUNTRY_PREFIX + _nsin(ctx.block.chain_id, counter)
        isin = body + check_digit(body)
        if not ctx.exists(assigned_key(isin)):
            ctx.put(counter_key(), counter)
            ctx.put(assigned_key(isin), 1)
            return isin
    require(False, f"{MAX_ASSIGN_ATTEMPTS} ISIN collisions in a row: the hash is broken")
    raise AssertionError("unreachable")
