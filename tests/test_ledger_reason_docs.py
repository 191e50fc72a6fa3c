"""docs/REASON_CODES.md documents every reason code a client can receive, and no other."""

from __future__ import annotations

import re
from pathlib import Path

from ledger.reasons import Reason

DOC = Path(__file__).resolve().parent.parent / "docs" / "REASON_CODES.md"
ROW = re.compile(r"^\| `([A-Z_]+)` \| ([a-z ,]+) \| (.+) \| (.+) \|$")
PLACES = {"door", "dropped", "in block"}


def documented() -> dict[str, tuple[str, str, str]]:
    rows = {}
    for line in DOC.read_text().splitlines():
        match = ROW.match(line)
        if match:
            code, where, meaning, action = match.groups()
            assert code not in rows, f"{code} documented twice"
            rows[code] = (where, meaning, action)
    return rows


def test_every_reason_code_is_documented_with_where_it_arises_and_what_to_do():
    rows = documented()
    missing = [reason.value for reason in Reason if reason.value not in rows]
    assert not missing, f"add these codes to docs/REASON_CODES.md: {missing}"
    for code, (where, meaning, action) in rows.items():
        assert {place.strip() for place in where.split(",")} <= PLACES, code
        assert meaning.strip() and action.strip(), code


def test_no_documented_code_is_unknown_to_the_ledger():
    unknown = set(documented()) - {reason.value for reason in Reason}
    assert not unknown, f"documented but not in ledger.reasons.Reason: {sorted(unknown)}"
